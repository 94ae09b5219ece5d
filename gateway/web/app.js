// The duty desk (contract §10): one page, no build step, no library, served by the gateway.
// It logs in once (token → session cookie), then listens to the server's event stream: the
// board changes when the gateway's record does, on every open page, with no polling.
"use strict";

const API = "/api/v1";
const T = {
  zh: {
    logout: "退出", login: "登录", token: "令牌", sign_in: "登录", ack_link: "确认告警",
    reconnecting: "连接中断，正在重连…", on_duty: "当值", duty_manager: "值班经理",
    outgoing: "交班经理", handover: "交接", patrol: "巡检", key_posts: "重点部位", rounds: "巡回",
    alerts: "未关闭告警", no_alerts: "没有未关闭的告警", plant: "机房", devices_offline: "离线设备",
    recent_scans: "最近签到", manual_signoff: "补签", post: "岗位", time: "时间", reason: "原因",
    submit: "提交", signoff_hint: "读卡器故障时手工补签（最近一小时内）", until: "至",
    handover_done: "已完成", handover_open: "进行中", handover_overdue: "已逾期",
    of: "／", hours: "小时", minutes: "分钟", deadline: "截止", due: "应于", overdue: "已逾期",
    ack: "确认", acknowledged: "已确认", open: "未确认", by: "确认人", none: "无",
    all_online: "全部在线", signed_off: "已补签", bad_token: "令牌无效", comment: "备注",
    ack_done: "已确认，谢谢。", lang: "English", shelved: "已搁置至", manual: "手工",
    assurance_signed_qr: "签名二维码", assurance_sun: "防伪标签",
  },
  en: {
    logout: "Log out", login: "Log in", token: "Token", sign_in: "Log in",
    ack_link: "Acknowledge alert", reconnecting: "Connection lost, reconnecting…",
    on_duty: "On duty", duty_manager: "Duty manager", outgoing: "Outgoing manager",
    handover: "Handover", patrol: "Patrol", key_posts: "Key posts", rounds: "Rounds",
    alerts: "Open alerts", no_alerts: "No open alerts", plant: "Plant rooms",
    devices_offline: "Devices offline", recent_scans: "Recent scans",
    manual_signoff: "Manual sign-off", post: "Post", time: "Time", reason: "Reason",
    submit: "Submit", signoff_hint: "When a post's reader is broken (within the last hour)",
    until: "until", handover_done: "done", handover_open: "open", handover_overdue: "overdue",
    of: " of ", hours: "h", minutes: "min", deadline: "deadline", due: "due",
    overdue: "overdue", ack: "Acknowledge", acknowledged: "acknowledged", open: "open",
    by: "by", none: "none", all_online: "all online", signed_off: "Signed off",
    bad_token: "Token not valid", comment: "Comment", ack_done: "Acknowledged, thank you.",
    lang: "中文", shelved: "shelved until", manual: "manual",
    assurance_signed_qr: "signed QR", assurance_sun: "SUN tag",
  },
};

let lang = localStorage.getItem("patrol.lang");
let me = null;
let model = null;
let stream = null;
const $ = (id) => document.getElementById(id);
const t = (key) => (T[lang] || T.zh)[key] ?? key;
const hhmm = (iso) => (iso ? iso.slice(11, 16) : "—");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (init.body) init.headers = { "Content-Type": "application/json" };
  const response = await fetch(API + path, init);
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return { status: response.status, ok: response.ok, body };
}

function errorText(body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((e) => `${e.loc.at(-1)}: ${e.msg}`).join("; ");
  return detail ? String(detail) : "";
}

function applyLang() {
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("lang").textContent = t("lang");
  render();
}

async function start() {
  const query = new URLSearchParams(location.search);
  if (query.get("ack")) return ackLink(query);
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {  // a login link (the demo prints one): keep the token, hide it
    localStorage.setItem("patrol.token", hash.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  await session();
}

async function session() {
  let answer = await api("/me");
  const token = localStorage.getItem("patrol.token");
  if (answer.status === 401 && token) {
    answer = await api("/session", { method: "POST", body: JSON.stringify({ token }) });
    if (answer.status === 401) localStorage.removeItem("patrol.token");
  }
  if (!answer.ok) return showLogin();
  me = answer.body;
  lang = lang || (me.locale === "en" ? "en" : "zh");
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = me.name;
  $("site-name").textContent = me.site_name;
  $("signoff-card").hidden = !me.may.signoff;
  applyLang();
  connect();
  if (window.onSession) window.onSession();  // records.js: the work log and the weekly pack
}

function showLogin() {
  lang = lang || "zh";
  applyLang();
  $("board").hidden = true;
  $("login").hidden = false;
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource(API + "/events");
  stream.addEventListener("board", (e) => { model = JSON.parse(e.data); online(); render(); });
  stream.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    Object.assign(model, { patrol: s.patrol, duty_until: s.duty_until, now: s.now });
    render();
  });
  stream.addEventListener("alert", (e) => {
    const { record } = JSON.parse(e.data);
    model.alerts = model.alerts.filter((a) => a.id !== record.id);
    if (record.state !== "closed") model.alerts.unshift(record);
    model.alerts.sort((a, b) => (a.raised_at < b.raised_at ? 1 : -1));
    render();
  });
  stream.addEventListener("scans", (e) => {  // the newest first
    const fresh = JSON.parse(e.data);
    const ids = new Set(fresh.map((s) => s.id));
    model.scans = [...fresh, ...model.scans.filter((s) => !ids.has(s.id))].slice(0, 20);
    render();
  });
  stream.addEventListener("plant", (e) => { model.plant = JSON.parse(e.data); render(); });
  stream.addEventListener("devices", (e) => { model.devices = JSON.parse(e.data); render(); });
  stream.onerror = () => {
    $("offline").hidden = false;
    if (stream.readyState === EventSource.CLOSED) {  // refused (a restart ended the session)
      stream = null;
      setTimeout(session, 2000);
    }
  };
}

function online() { $("offline").hidden = true; }

function render() {
  if (!model) return;
  const p = model.patrol;
  $("now").textContent = model.now ? model.now.slice(0, 16).replace("T", " ") : "";
  $("manager").textContent = p && p.duty_manager ? p.duty_manager.name : "—";
  $("until").textContent = model.duty_until ? `${t("until")} ${model.duty_until.slice(5, 16).replace("T", " ")}` : "";
  $("outgoing-line").hidden = !(p && p.outgoing_manager);
  $("outgoing").textContent = p && p.outgoing_manager ? p.outgoing_manager.name : "";
  $("handover").textContent = p ? t(`handover_${p.handover.state}`) : "—";
  $("handover").className = p && p.handover.state === "overdue" ? "out" : "";
  renderPatrol(p);
  renderAlerts();
  renderPlant();
  renderDevices();
  renderScans();
  renderSignoffPosts();
}

function renderPatrol(p) {
  if (!p) return;
  const { minutes, required_minutes: need } = p.patrol;
  const h = Math.floor(minutes / 60), m = minutes % 60;
  $("patrol-time").textContent =
    `${h}${t("hours")}${m}${t("minutes")}${t("of")}${need / 60}${t("hours")}`;
  $("patrol-deadline").textContent = `${t("deadline")} ${hhmm(p.patrol.deadline)}`;
  $("patrol-bar").style.width = `${Math.min(100, (100 * minutes) / Math.max(1, need))}%`;
  $("key-posts").replaceChildren(
    ...p.key_posts.signed.map((s) => el("li", { class: "signed" }, `✓ ${s.name} ${hhmm(s.at)}`)),
    ...p.key_posts.missing.map((s) => el("li", { class: "missing" }, `✗ ${s.name}`)),
  );
  $("rounds").replaceChildren(
    ...p.rounds.map((r) =>
      el("li", { class: r.overdue ? "out" : "" },
        `${r.name} · ${r.overdue ? t("overdue") : t("due")} ${hhmm(r.due)}`)),
  );
}

function renderAlerts() {
  const list = model.alerts;
  $("alert-count").textContent = list.length;
  $("no-alerts").hidden = list.length > 0;
  $("alerts").replaceChildren(...list.map((a) => {
    const item = el("li", { class: `state-${a.state}`, "data-alert-id": a.id, "data-state": a.state },
      el("span", { class: `sev ${a.severity}` }, a.severity),
      el("span", { class: "msg" }, a.message, " ", el("span", { class: "tag" }, a.rule)),
      el("span", { class: "muted" }, hhmm(a.raised_at)));
    if (a.state === "acknowledged") {
      item.append(el("span", { class: "tag", "data-testid": "acknowledged" },
        `${t("acknowledged")} · ${a.acknowledged_by}`));
    } else if (a.shelved_until) {
      item.append(el("span", { class: "tag" }, `${t("shelved")} ${hhmm(a.shelved_until)}`));
    }
    if (a.state === "open" && me && me.may.ack_any) {
      item.append(el("button", { class: "primary", "data-testid": "ack", onclick: () => acknowledge(a.id) },
        t("ack")));
    }
    if (window.alertActions) window.alertActions(a, item);  // records.js: a work order from it
    return item;
  }));
}

async function acknowledge(id) {
  const answer = await api(`/alerts/${encodeURIComponent(id)}/ack`, {
    method: "POST", body: JSON.stringify({ comment: "" }),
  });
  if (!answer.ok) window.alert(errorText(answer.body));  // the stream shows the change itself
}

function value(metric) {
  if (metric.value === null) return "—";
  if (typeof metric.value === "boolean") return String(metric.value);
  const n = Number(metric.value).toFixed(1).replace(/\.0$/, "");
  return /^[A-Za-z]/.test(metric.unit) ? `${n} ${metric.unit}` : `${n}${metric.unit}`;
}

function renderPlant() {
  $("plant").replaceChildren(...model.plant.map((eq) =>
    el("div", { class: "equipment" },
      el("b", {}, eq.name), " ", el("span", { class: "muted" }, eq.post_name), el("br"),
      ...eq.metrics.map((m) => el("span", { class: m.out ? "metric out" : "metric", "data-out": m.out },
        `${m.metric} ${value(m)}${m.out ? " ⚠" : ""}`)))));
}

function renderDevices() {
  const off = model.devices.filter((d) => d.state === "offline");
  $("devices").replaceChildren(...(off.length ? off.map((d) =>
    el("li", { class: "out" }, `${d.name} (${d.device}) ${hhmm(d.since)}`))
    : [el("li", { class: "muted" }, t("all_online"))]));
}

function renderScans() {
  $("scans").replaceChildren(...model.scans.map((s) =>
    el("li", { "data-scan-id": s.id },
      `${hhmm(s.time)} ${s.post_name} · ${s.person_name || "?"}`,
      ...(s.assurance && s.assurance !== "plain_uid"
        ? [el("span", { class: "tag signed" }, ` ${t("assurance_" + s.assurance)}`)] : []),
      ...s.flags.map((f) => el("span", { class: "tag" }, ` ${f === "manual" ? t("manual") : f}`)))));
}

function renderSignoffPosts() {
  const select = $("signoff-post");
  if (select.options.length || !model.posts) return;
  select.replaceChildren(...model.posts.map((p) => el("option", { value: p.id }, p.name)));
  $("signoff-time").value = hhmm(model.now);
}

$("signoff-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const now = model.now;  // site-local ISO with offset
  let day = now.slice(0, 10);
  const clock = $("signoff-time").value;
  if (clock > now.slice(11, 16)) {  // a time after now means yesterday evening
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() - 1);
    day = d.toISOString().slice(0, 10);
  }
  const body = { post: $("signoff-post").value, time: `${day}T${clock}:00`, reason: $("signoff-reason").value };
  const answer = await api("/signoffs", { method: "POST", body: JSON.stringify(body) });
  $("signoff-result").className = answer.ok ? "result" : "error";
  $("signoff-result").textContent = answer.ok ? `${t("signed_off")}: ${answer.body.message}` : errorText(answer.body);
  if (answer.ok) $("signoff-reason").value = "";
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  const answer = await api("/session", { method: "POST", body: JSON.stringify({ token }) });
  if (!answer.ok) { $("login-error").textContent = errorText(answer.body) || t("bad_token"); return; }
  localStorage.setItem("patrol.token", token);
  $("token").value = "";
  await session();
});

$("logout").addEventListener("click", async () => {
  if (stream) stream.close();
  localStorage.removeItem("patrol.token");
  await api("/session", { method: "DELETE" });
  location.reload();
});

$("lang").addEventListener("click", () => {
  lang = lang === "en" ? "zh" : "en";
  localStorage.setItem("patrol.lang", lang);
  applyLang();
});

async function ackLink(query) {
  lang = lang || "zh";
  applyLang();
  $("acklink").hidden = false;
  const link = { alert: query.get("ack"), person: query.get("p"), expires: query.get("x"), sig: query.get("s") };
  const view = await api(`/ack-link?${new URLSearchParams(link)}`);
  const box = $("acklink-body");
  if (!view.ok) { box.replaceChildren(el("p", { class: "error" }, errorText(view.body))); return; }
  const a = view.body.alert;
  const comment = el("input", { id: "ack-comment", maxlength: "2000", placeholder: t("comment") });
  const result = el("p", { class: "result", role: "status" });
  const button = el("button", { class: "primary", "data-testid": "ack", onclick: async () => {
    const body = { ...link, expires: Number(link.expires), comment: comment.value };
    const answer = await api("/ack-link", { method: "POST", body: JSON.stringify(body) });
    result.className = answer.ok ? "result" : "error";
    result.textContent = answer.ok ? t("ack_done") : errorText(answer.body);
    if (answer.ok) button.disabled = true;
  } }, t("ack"));
  box.replaceChildren(
    el("p", {}, el("span", { class: `sev ${a.severity}` }, a.severity), " ", a.message),
    el("p", { class: "muted" }, `${a.rule} · ${a.subject} · ${hhmm(a.raised_at)} · ${t(a.state)}`),
    el("p", {}, view.body.name), comment, button, result);
}

start();
