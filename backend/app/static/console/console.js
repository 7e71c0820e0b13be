// The console's only script: live progress from the service's event streams, and the report
// form's column lists. Every page works without it; it only saves reloading.
"use strict";

const FINAL = new Set(["completed", "failed", "cancelled"]);

function field(root, name) {
  return root.querySelector(`[data-field="${name}"]`);
}

function sizeOf(bytes) {
  if (bytes === null || bytes === undefined) return "";
  let size = bytes;
  for (const unit of ["B", "KB", "MB", "GB"]) {
    if (size < 1024 || unit === "GB") return unit === "B" ? `${size} B` : `${size.toFixed(1)} ${unit}`;
    size /= 1024;
  }
  return "";
}

function showProgress(root, job) {
  const percent = Math.round(job.progress.percent);
  const bar = field(root, "bar");
  if (bar) {
    bar.value = job.progress.percent;
    bar.textContent = `${percent} %`;
  }
  const label = field(root, "percent");
  if (label) label.textContent = `${percent} %`;
  const status = field(root, "status");
  if (status) {
    status.textContent = job.status;
    status.className = `status status-${job.status}`;
  }
  root.dataset.status = job.status;
}

function downloadLink(job) {
  const link = document.createElement("a");
  link.href = job.download_url;
  link.setAttribute("download", "");
  link.textContent = "Download";
  return link;
}

// The jobs list: one stream of every job of the user (every user's, for an admin).
function jobsPage() {
  const rows = document.getElementById("job-rows");
  const live = document.body.dataset.live === "yes";
  const admin = document.body.dataset.admin === "yes";
  const source = new EventSource("/ui/events");
  const onEvent = (message) => {
    const job = JSON.parse(message.data);
    let row = rows.querySelector(`tr[data-job-id="${job.job_id}"]`);
    if (!row) {
      if (!live) return;
      row = newRow(job, admin);
      const empty = rows.querySelector("tr.empty");
      if (empty) empty.remove();
      rows.prepend(row);
    }
    showProgress(row, job);
    const result = field(row, "result");
    if (result && job.download_url && !result.querySelector("a")) {
      result.replaceChildren(downloadLink(job), " ", sizeOf(job.result_bytes));
    }
  };
  source.addEventListener("status", onEvent);
  source.addEventListener("progress", onEvent);
}

function newRow(job, admin) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.job_id;
  const label = job.title || `${job.job_type} ${job.job_id.slice(0, 8)}`;
  const cell = (name, build) => {
    const td = document.createElement("td");
    td.dataset.label = name;
    build(td);
    row.append(td);
    return td;
  };
  cell("Job", (td) => {
    const link = document.createElement("a");
    link.href = `/ui/jobs/${job.job_id}`;
    link.textContent = label;
    td.append(link);
  });
  cell("Type", (td) => { td.textContent = job.report_type || job.job_type; });
  cell("Dataset", (td) => { td.textContent = job.dataset_name || ""; });
  cell("Status", (td) => {
    const span = document.createElement("span");
    span.dataset.field = "status";
    td.append(span);
  });
  cell("Progress", (td) => {
    const bar = document.createElement("progress");
    bar.className = "bar";
    bar.max = 100;
    bar.dataset.field = "bar";
    bar.setAttribute("aria-label", `Progress of ${label}`);
    const percent = document.createElement("span");
    percent.className = "percent";
    percent.dataset.field = "percent";
    td.append(bar, percent);
  });
  cell("Created", (td) => { td.textContent = job.created_at.replace("T", " ").slice(0, 19) + " UTC"; });
  cell("Result", (td) => { td.dataset.field = "result"; });
  if (admin) cell("Owner", (td) => { td.textContent = job.owner || ""; });
  return row;
}

// One job: its own stream, which ends after the final event.
function jobPage() {
  const body = document.body;
  if (FINAL.has(body.dataset.status)) return;
  const source = new EventSource(`/ui/jobs/${body.dataset.jobId}/events`);
  const onEvent = (message) => {
    const job = JSON.parse(message.data);
    showProgress(body, job);
    field(body, "message").textContent = job.progress.message;
    field(body, "attempts").textContent = job.attempts;
    if (!FINAL.has(job.status)) return;
    source.close(); // the server ends the stream; without this the browser would reconnect
    field(body, "finished").textContent = (job.finished_at || "").replace("T", " ").slice(0, 19) + " UTC";
    field(body, "cancel").hidden = true;
    const rerun = field(body, "rerun");
    if (rerun) rerun.hidden = false;
    if (job.error) {
      const error = field(body, "error");
      error.textContent = job.error;
      error.hidden = false;
    }
    if (job.download_url) {
      field(body, "download-link").href = job.download_url;
      field(body, "size").textContent = sizeOf(job.result_bytes);
      field(body, "download").hidden = false;
    }
    const note = field(body, "no-history");
    if (note) note.textContent = "The attempts are listed when you reload the page.";
  };
  source.addEventListener("status", onEvent);
  source.addEventListener("progress", onEvent);
}

// The report form: the column lists follow the chosen dataset's schema.
function reportPage() {
  const dataset = document.getElementById("r-dataset");
  field(document, "reload-columns").hidden = true;
  const fill = (select, columns, kinds, chosen, none) => {
    const options = none ? [new Option("none", "")] : [];
    for (const column of columns) {
      if (!kinds.includes(column.kind)) continue;
      const selected = chosen.includes(column.name);
      options.push(new Option(column.name, column.name, selected, selected));
    }
    select.replaceChildren(...options);
  };
  dataset.addEventListener("change", async () => {
    field(document, "demo-only").hidden = !dataset.value.startsWith("demo:");
    const response = await fetch(`/ui/datasets/columns?dataset=${encodeURIComponent(dataset.value)}`,
                                 { credentials: "same-origin" });
    if (!response.ok) return;
    const schema = await response.json();
    const form = document.getElementById("report-form");
    fill(form.querySelector('[data-columns="group"]'), schema.columns,
         ["string", "date", "boolean", "integer"], schema.group_by, false);
    fill(form.querySelector('[data-columns="measure"]'), schema.columns,
         ["integer", "number"], schema.measures, false);
    fill(form.querySelector('[data-columns="date"]'), schema.columns,
         ["date", "timestamp"], schema.date_column ? [schema.date_column] : [], true);
  });
}

const PAGES = { jobs: jobsPage, job: jobPage, report: reportPage };
(PAGES[document.body.dataset.page] || (() => {}))();
