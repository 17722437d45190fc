// The run page, live: follows the run's server-sent events and updates the task
// table, the graph's nodes, the run's status and its pending feedback links.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root || !window.EventSource) return;

  function seconds(value) {
    if (typeof value !== "number" || !isFinite(value)) return "";
    if (value < 1) return Math.round(value * 1000) + " ms";
    if (value < 60) return value.toFixed(1) + " s";
    if (value < 3600) return Math.floor(value / 60) + " min " + Math.round(value % 60) + " s";
    return Math.floor(value / 3600) + " h " + Math.floor((value % 3600) / 60) + " min";
  }

  // The table's rows and the graph's nodes by task id, found once (not searched per event).
  var rows = document.getElementById("task-rows");
  var rowOf = new Map();
  Array.prototype.forEach.call(rows.rows, function (tr) { rowOf.set(tr.dataset.task, tr); });
  var nodeOf = new Map();
  document.querySelectorAll("svg.graph .node").forEach(function (node) { nodeOf.set(node.dataset.task, node); });
  // What the page was given of each task's state, for the counts per state.
  var statesEl = document.getElementById("task-states");
  var known = statesEl ? JSON.parse(statesEl.textContent) : {};
  var untracked = document.querySelector('[data-count-state="untracked"]');

  function row(taskId) {
    var found = rowOf.get(taskId);
    if (found || rows.dataset.paged) return found || null;  // a paged table: the task is on another page
    var tr = document.createElement("tr");
    tr.dataset.task = taskId;
    var code = document.createElement("code");
    code.textContent = taskId;
    var state = document.createElement("span");
    state.className = "state";
    var cells = [code, state, null, null];
    var classes = ["", "", "attempts", "duration"];
    cells.forEach(function (content, n) {
      var td = document.createElement("td");
      if (classes[n]) td.className = classes[n];
      if (content) td.appendChild(content);
      tr.appendChild(td);
    });
    rows.appendChild(tr);
    rowOf.set(taskId, tr);
    return tr;
  }

  function count(state, change) {
    var span = document.querySelector('[data-count-state="' + CSS.escape(state) + '"]');
    if (!span) return;
    var b = span.querySelector("b");
    var value = Math.max(0, (parseInt(b.textContent, 10) || 0) + change);
    b.textContent = String(value);
    span.hidden = value === 0;
  }

  function recount(taskId, state) {
    var before = known[taskId];
    if (before === undefined) {  // not summarized when the page was made: pending, or past what runs keep
      before = untracked && parseInt(untracked.querySelector("b").textContent, 10) > 0 ? "untracked" : "pending";
    }
    if (before !== state) {
      count(before, -1);
      count(state, 1);
    }
    known[taskId] = state;
  }

  function setState(taskId, state) {
    if (!taskId) return null;
    recount(taskId, state);
    var node = nodeOf.get(taskId);
    if (node) node.dataset.state = state;
    var tr = row(taskId);
    if (!tr) return null;
    var span = tr.querySelector(".state");
    span.dataset.state = state;
    span.textContent = state;
    return tr;
  }

  function setStatus(status, error) {
    var el = document.getElementById("run-status");
    el.dataset.status = status;
    el.textContent = status;
    if (error) {
      var dd = document.getElementById("run-error");
      if (dd) dd.textContent = error;
    }
  }

  function addPending(event) {
    var list = document.getElementById("pending-list");
    var id = event.data.feedback_id;
    if (!id || list.querySelector('[data-feedback="' + CSS.escape(id) + '"]')) return;
    var li = document.createElement("li");
    li.dataset.feedback = id;
    var a = document.createElement("a");
    a.href = root.dataset.feedback + encodeURIComponent(id);
    a.textContent = event.data.prompt || id;
    li.appendChild(a);
    list.appendChild(li);
    document.getElementById("no-pending").hidden = true;
  }

  function removePending(event) {
    var list = document.getElementById("pending-list");
    var li = list.querySelector('[data-feedback="' + CSS.escape(event.data.feedback_id || "") + '"]');
    if (li) li.remove();
    document.getElementById("no-pending").hidden = list.children.length > 0;
  }

  // What tasks stream (SPEC 12): a block per task attempt; text chunks are appended as
  // they come, other values shown as JSON lines.
  var streamOf = new Map();
  function streamBlock(taskId, attempt) {
    var key = taskId + "#" + attempt;
    var pre = streamOf.get(key);
    if (pre) return pre;
    var box = document.createElement("div");
    box.className = "stream";
    var title = document.createElement("div");
    var code = document.createElement("code");
    code.textContent = taskId;
    title.appendChild(code);
    if (attempt > 1) title.appendChild(document.createTextNode(" (attempt " + attempt + ")"));
    pre = document.createElement("pre");
    pre.dataset.task = taskId;
    pre.dataset.attempt = String(attempt);
    box.appendChild(title);
    box.appendChild(pre);
    document.getElementById("stream-list").appendChild(box);
    document.getElementById("streams").hidden = false;
    streamOf.set(key, pre);
    return pre;
  }
  function addChunk(chunk) {
    var pre = streamBlock(chunk.task_id, chunk.attempt || 1);
    if (chunk.missed) pre.appendChild(document.createTextNode("[" + chunk.missed + " chunks dropped]\n"));
    var text = typeof chunk.data === "string" ? chunk.data : JSON.stringify(chunk.data) + "\n";
    pre.appendChild(document.createTextNode(text));
  }

  JSON.parse(document.getElementById("streamed").textContent).forEach(addChunk);  // before the page

  var handlers = {
    stream: function (chunk) { addChunk(chunk); },
    run_started: function () { setStatus("running"); },
    run_suspended: function () { setStatus("suspended"); },
    run_completed: function () { setStatus("completed"); },
    run_failed: function (e) { setStatus("failed", e.data.error); },
    task_started: function (e) {
      var tr = setState(e.task_id, "running");
      if (!tr) return;
      tr.querySelector(".attempts").textContent = e.data.attempt || "";
      tr.querySelector(".duration").textContent = "";
      tr.dataset.started = e.timestamp;
    },
    task_retrying: function (e) { setState(e.task_id, "retrying"); },
    task_throttled: function (e) { setState(e.task_id, "throttled"); },
    task_admitted: function (e) {
      if (known[e.task_id] === "throttled") setState(e.task_id, "running");
    },
    task_completed: function (e) {
      var tr = setState(e.task_id, "done");
      if (tr) tr.querySelector(".duration").textContent = seconds(e.data.duration);
    },
    task_failed: function (e) {
      var tr = setState(e.task_id, "failed");
      if (!tr) return;
      var started = parseFloat(tr.dataset.started);
      tr.querySelector(".duration").textContent = isFinite(started) ? seconds(e.timestamp - started) : "";
    },
    task_added: function (e) {
      if (!e.task_id || known[e.task_id] !== undefined || rowOf.has(e.task_id)) return;
      known[e.task_id] = "pending";  // one more task
      count("pending", 1);
      var tr = row(e.task_id);
      if (tr) tr.querySelector(".state").dataset.state = tr.querySelector(".state").textContent = "pending";
    },
    feedback_requested: function (e) { setState(e.task_id, "waiting"); addPending(e); },
    feedback_answered: function (e) {
      if (known[e.task_id] === "waiting") setState(e.task_id, "running");
      removePending(e);
    }
  };

  var source = new EventSource(root.dataset.events);
  Object.keys(handlers).forEach(function (kind) {
    source.addEventListener(kind, function (message) { handlers[kind](JSON.parse(message.data)); });
  });
  source.addEventListener("end", function (message) {
    var end = JSON.parse(message.data);
    source.close();
    if (end.status) setStatus(end.status, end.error);
    var started = parseFloat(root.dataset.started);
    if (!root.dataset.ended && isFinite(started)) {
      document.getElementById("run-duration").textContent = seconds(Date.now() / 1000 - started);
    }
    document.getElementById("live").textContent = "";
    root.dataset.ended = "yes";
  });
})();
