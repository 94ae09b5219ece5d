// The records (contract §11) on the duty desk: the work log of a duty day with the forms that
// add to it (calls, handover items, findings, work orders, complaints), the weekly pack with
// its chart and downloads, and the project head's review and waivers. Loaded after app.js,
// whose helpers (api, el, t, me, model) it uses; it re-reads a report after every change.
"use strict";

Object.assign(T.zh, {
  work_log: "工作日志", refresh: "刷新", add_entry: "记录来电、交接事项、巡检发现", kind: "类别",
  kind_call: "来电", kind_handover: "交接事项", kind_caution: "注意事项", kind_finding: "巡检发现",
  kind_note: "备注", text: "内容", follow_up: "跟进", new_order: "开工作任务单（ZJWY/KF/BG-024）",
  what: "事项", department: "部门", due_at: "期限", new_complaint: "登记投诉（ZJWY/KF/BG-026）",
  from: "投诉人", how: "方式", open_orders: "未关闭工作任务单", open_complaints: "待回访投诉",
  weekly_pack: "值班周报", review: "项目负责人批示", waive: "免罚", rule: "规则", subject: "对象",
  date: "当值日", close: "关闭", callback: "回访", done_what: "处理结果", saved: "已保存",
  to_order: "开任务单", empty: "无", overdue_mark: "已逾期", photo: "照片",
  new_incident: "事件报告（ZJWY/KF/BG-027）", where: "地点", when: "发生时间",
  told: "已通知（谁、何时）", major: "重大事件（立即通知总经理）",
});
Object.assign(T.en, {
  work_log: "Work log", refresh: "Refresh", add_entry: "Log a call, handover item or finding",
  kind: "Kind", kind_call: "Call", kind_handover: "Handover item", kind_caution: "Caution",
  kind_finding: "Patrol finding", kind_note: "Note", text: "Text", follow_up: "Follow-up",
  new_order: "New work order (ZJWY/KF/BG-024)", what: "What", department: "Department",
  due_at: "Due", new_complaint: "New complaint (ZJWY/KF/BG-026)", from: "From", how: "How",
  open_orders: "Open work orders", open_complaints: "Complaints awaiting callback",
  weekly_pack: "Weekly review pack", review: "The project head's review", waive: "Waive",
  rule: "Rule", subject: "Subject", date: "Duty day", close: "Close", callback: "Call back",
  done_what: "What was done", saved: "Saved", to_order: "Work order", empty: "none",
  overdue_mark: "overdue", photo: "Photo", new_incident: "Incident report (ZJWY/KF/BG-027)",
  where: "Where", when: "When it happened", told: "Who was told, when",
  major: "Major (the general manager is told at once)",
});

const MANAGING = ["duty_manager", "project_head", "general_manager"];
const mayManage = () => me && me.roles.some((r) => MANAGING.includes(r));
const isHead = () => me && me.roles.includes("project_head");

function dutyDay() {  // the duty day the gateway's patrol status names (its clock, §3)
  if (model && model.patrol && model.patrol.duty_day) return model.patrol.duty_day;
  return (model && model.now ? model.now : new Date().toISOString()).slice(0, 10);
}

function isoWeek(dayText) {
  const d = new Date(`${dayText}T00:00:00Z`);
  const weekday = (d.getUTCDay() + 6) % 7;
  d.setUTCDate(d.getUTCDate() - weekday + 3);  // the Thursday decides the year
  const year = d.getUTCFullYear();
  const first = new Date(Date.UTC(year, 0, 4));
  const week = 1 + Math.round(((d - first) / 86400000 - 3 + ((first.getUTCDay() + 6) % 7)) / 7);
  return `${year}-W${String(week).padStart(2, "0")}`;
}

function report(body) {
  const box = el("div", { class: "report" });
  if (body.chart) {
    const chart = el("div", { class: "chart-box", "data-testid": "chart" });
    chart.innerHTML = body.chart;  // SVG made by the gateway from numbers and escaped names
    box.append(chart);
  }
  for (const s of body.sections) {
    box.append(el("h4", { "data-section": s.key }, s.title));
    if (!s.rows.length) {
      box.append(el("p", { class: "muted" }, t("empty")));
    } else {
      const head = el("tr", {}, ...s.headers.map((h) => el("th", {}, h)));
      const rows = s.rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, cell(c)))));
      box.append(el("div", { class: "scroll" },
        el("table", { "data-table": s.key }, el("thead", {}, head), el("tbody", {}, ...rows))));
    }
    if (s.note) box.append(el("p", { class: "muted" }, s.note));
  }
  return box;
}

const PHOTO = /^[0-9a-f]{64}\.(jpg|png|webp)$/;

function cell(text) {  // a finding's photo shows as a thumbnail linking to the full image
  if (!PHOTO.test(text)) return text;
  const src = `${API}/photos/${text}`;
  return el("a", { href: src, target: "_blank", "data-photo": text },
    el("img", { src, alt: t("photo"), class: "thumb" }));
}

function links(path) {
  return ["pdf", "csv", "html"].map((f) =>
    el("a", { href: `${API}${path}${path.includes("?") ? "&" : "?"}format=${f}`, target: "_blank",
      "data-format": f }, f.toUpperCase()));
}

async function loadWorkLog() {
  const day = $("log-date").value || dutyDay();
  const answer = await api(`/worklog/${day}`);
  $("log-links").replaceChildren(...links(`/worklog/${day}`));
  $("worklog").replaceChildren(answer.ok ? report(answer.body)
    : el("p", { class: "error" }, errorText(answer.body)));
  await loadOpen();
}

async function loadOpen() {
  const orders = await api("/workorders");
  const complaints = await api("/complaints");
  const manage = mayManage();
  $("orders").replaceChildren(...(orders.ok && orders.body.length ? orders.body.map((o) => {
    const item = el("li", { "data-order-id": o.id, class: o.overdue ? "out" : "" },
      `${o.id} · ${o.title}${o.department ? ` · ${o.department}` : ""}`,
      o.due ? ` · ${t("due_at")} ${o.due.slice(5, 16).replace("T", " ")}` : "",
      o.overdue ? ` · ${t("overdue_mark")}` : "");
    if (manage) item.append(" ", closer(`/workorders/${encodeURIComponent(o.id)}/close`, t("close")));
    return item;
  }) : [el("li", { class: "muted" }, t("empty"))]));
  $("complaints").replaceChildren(...(complaints.ok && complaints.body.length
    ? complaints.body.map((c) => {
      const item = el("li", { "data-complaint-id": c.id },
        `${c.id} · ${c.who || ""} · ${c.what} · ${c.owner}`);
      if (manage) item.append(" ", closer(`/complaints/${encodeURIComponent(c.id)}/callback`, t("callback")));
      return item;
    }) : [el("li", { class: "muted" }, t("empty"))]));
}

function closer(path, label) {  // a small inline form: what was done, then the button
  const input = el("input", { placeholder: t("done_what"), maxlength: "2000", class: "inline" });
  input.style.maxWidth = "14rem";
  const button = el("button", { type: "button", onclick: async () => {
    const answer = await api(path, { method: "POST", body: JSON.stringify({ comment: input.value || "—" }) });
    if (!answer.ok) window.alert(errorText(answer.body));
    await loadWorkLog();
  } }, label);
  return el("span", {}, input, " ", button);
}

async function loadPack() {
  const week = $("pack-week").value || isoWeek(dutyDay());
  $("pack-week").value = week;
  const answer = await api(`/reports/weekly?week=${week}`);
  $("pack-links").replaceChildren(...links(`/reports/weekly?week=${week}`));
  $("pack").replaceChildren(answer.ok ? report(answer.body)
    : el("p", { class: "error" }, errorText(answer.body)));
}

async function send(form, path, body, after) {
  const result = $(`${form}-result`);
  const answer = await api(path, { method: "POST", body: JSON.stringify(body) });
  result.className = answer.ok ? "result" : "error";
  result.textContent = answer.ok ? `${t("saved")}: ${answer.body.message}` : errorText(answer.body);
  if (answer.ok) {
    for (const input of $(`${form}-form`).querySelectorAll("input")) input.value = "";
    await after();
  }
}

function local(value) {  // a datetime-local value is site-local time; the API reads it so (§1)
  return value ? `${value}:00` : null;
}

$("entry-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { kind: $("entry-kind").value, text: $("entry-text").value };
  const file = $("entry-photo").files[0];
  if (file) {  // the image itself is the body (4.5); the entry names what the upload gave
    const response = await fetch(`${API}/photos`, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": file.type }, body: file });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      $("entry-result").className = "error";
      $("entry-result").textContent = errorText(answer);
      return;
    }
    body.photo = answer.photo;
  }
  if ($("entry-follow").value) body.follow_up = $("entry-follow").value;
  if ($("entry-post").value) body.post = $("entry-post").value;
  if ($("log-date").value && $("log-date").value !== dutyDay()) body.date = $("log-date").value;
  send("entry", "/worklog/entries", body, loadWorkLog);
});
$("order-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { title: $("order-title").value };
  if ($("order-department").value) body.department = $("order-department").value;
  if ($("order-due").value) body.due = local($("order-due").value);
  send("order", "/workorders", body, loadWorkLog);
});
$("complaint-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { what: $("complaint-what").value };
  if ($("complaint-who").value) body.who = $("complaint-who").value;
  if ($("complaint-how").value) body.how = $("complaint-how").value;
  send("complaint", "/complaints", body, loadWorkLog);
});
$("incident-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { title: $("incident-title").value, major: $("incident-major").checked };
  if ($("incident-where").value) body.where = $("incident-where").value;
  if ($("incident-when").value) body.when = local($("incident-when").value);
  if ($("incident-told").value) body.told = $("incident-told").value;
  send("incident", "/incidents", body, async () => {
    $("incident-major").checked = false;
    await loadWorkLog();
  });
});
$("review-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const week = $("pack-week").value || isoWeek(dutyDay());
  send("review", "/reviews", { week, text: $("review-text").value }, loadPack);
});
$("waive-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { rule: $("waive-rule").value, subject: $("waive-subject").value,
    date: $("waive-date").value, reason: $("waive-reason").value };
  send("waive", "/violations/waive", body, loadPack);
});
$("log-refresh").addEventListener("click", loadWorkLog);
$("log-date").addEventListener("change", loadWorkLog);
$("pack-refresh").addEventListener("click", loadPack);
$("pack-week").addEventListener("change", loadPack);

// One click on an alert opens a work order from it (4.7, §11).
window.alertActions = (alert, item) => {
  if (!mayManage() || alert.rule === "workorder.overdue") return;
  item.append(el("button", { type: "button", "data-testid": "to-order", onclick: async () => {
    const answer = await api("/workorders", { method: "POST",
      body: JSON.stringify({ title: alert.message, alert: alert.id }) });
    if (!answer.ok) window.alert(errorText(answer.body));
    await loadWorkLog();
  } }, t("to_order")));
};

window.onSession = async () => {
  $("record-forms").hidden = !mayManage();
  $("head-forms").hidden = !isHead();
  // The board's first message brings the clock and the posts; wait for it (a few tries).
  for (let i = 0; i < 50 && !model; i += 1) await new Promise((r) => setTimeout(r, 100));
  if (model && model.posts && $("entry-post").options.length <= 1) {
    $("entry-post").append(...model.posts.map((p) => el("option", { value: p.id }, p.name)));
  }
  $("log-date").value = dutyDay();
  await loadWorkLog();
  await loadPack();
};
