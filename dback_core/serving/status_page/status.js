// dback status page: the d-zone protocol, rendered as a live member grid.
// Everything from the server is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOR = /^#[0-9a-fA-F]{6}$/;
const STATUSES = new Set(["online", "idle", "dnd", "offline"]);
const CHAT_LIMIT = 200;
//: Charts keep the last five minutes, one sample every two seconds.
const SAMPLE_MS = 2000;
const SAMPLES = 150;
const PLUGIN_REFRESH_MS = 5000;

const state = {
  socket: null,
  guilds: {},       // snowflake -> {id, name, passworded, default}
  current: null,    // snowflake of the guild shown
  wanted: null,     // short id the user picked
  members: {},      // uid -> user record
  retry: 500,
  listed: false,    // a server-list has arrived
  plugins: null,    // the last /api/plugins answer
  viewers: [],      // samples for the charts
  rates: [],
  lastEvents: null, // {total, time} of the previous /metrics sample
};

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

function setConnection(label) {
  const badge = $("connection");
  badge.dataset.state = label;
  badge.textContent = label;
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(message));
  }
}

function join(id, password) {
  state.wanted = id;
  const data = { server: id };
  if (password) data.password = password;
  send({ type: "connect", data });
}

function renderEmptyState() {
  const empty = state.listed && Object.keys(state.guilds).length === 0;
  $("empty").hidden = !empty;
  if (!empty) return;
  const hints = $("empty-hints");
  hints.replaceChildren();
  const entries = state.plugins ? state.plugins.plugins : [];
  const waiting = entries.filter((entry) =>
    ["not configured", "failed", "unavailable"].includes(entry.status),
  );
  for (const entry of waiting) {
    const item = document.createElement("li");
    item.dataset.name = entry.name;
    item.textContent = `${entry.name} (${entry.status}): ${entry.error || "no reason given"}`;
    hints.append(item);
  }
  if (waiting.length === 0) {
    const item = document.createElement("li");
    item.textContent =
      "no installed plugin is waiting for settings: install a provider plugin, or name " +
      "the ones to use in DBACK_PLUGINS";
    hints.append(item);
  }
}

function renderGuilds() {
  renderEmptyState();
  const select = $("guilds");
  select.replaceChildren();
  const entries = Object.entries(state.guilds);
  for (const [snowflake, info] of entries) {
    const option = document.createElement("option");
    option.value = info.id;
    option.dataset.snowflake = snowflake;
    option.textContent = info.name + (info.passworded ? " (password)" : "");
    select.append(option);
  }
  const fallback = entries.find(([, info]) => info.default) || entries[0];
  const pick = entries.some(([, info]) => info.id === state.wanted)
    ? state.wanted
    : fallback && fallback[1].id;
  if (pick) {
    select.value = pick;
    join(pick);
  }
}

function memberNode(user) {
  let node = document.querySelector(`.member[data-uid="${CSS.escape(String(user.uid))}"]`);
  if (!node) {
    node = document.createElement("li");
    node.className = "member";
    node.dataset.uid = String(user.uid);
    const dot = document.createElement("span");
    dot.className = "dot";
    const name = document.createElement("span");
    name.className = "name";
    node.append(dot, name);
    $("members").append(node);
  }
  return node;
}

function renderMember(user) {
  const node = memberNode(user);
  const status = STATUSES.has(user.status) ? user.status : "offline";
  node.dataset.status = status;
  node.querySelector(".dot").dataset.status = status;
  node.querySelector(".dot").title = status;
  const name = node.querySelector(".name");
  name.textContent = user.username || String(user.uid);
  name.style.color = COLOR.test(user.roleColor || "") ? user.roleColor : "";
}

function renderCounts() {
  const users = Object.values(state.members);
  const online = users.filter((user) => user.status && user.status !== "offline").length;
  $("counts").textContent = `${online} online of ${users.length}`;
}

function onJoin(data) {
  const users = data.users || {};
  state.members = {};
  $("members").replaceChildren();
  state.current = Object.keys(state.guilds).find(
    (key) => state.guilds[key].id === data.request.server || key === data.request.server,
  ) || data.request.server;
  $("guild-name").textContent = data.serverName || state.current;
  for (const user of Object.values(users)) {
    state.members[user.uid] = user;
    renderMember(user);
  }
  $("chat").replaceChildren();
  $("login").hidden = true;
  showError("");
  renderCounts();
}

function onPresence(data) {
  if (data.delete) {
    delete state.members[data.uid];
    const node = document.querySelector(`.member[data-uid="${CSS.escape(String(data.uid))}"]`);
    if (node) node.remove();
  } else {
    state.members[data.uid] = { ...(state.members[data.uid] || {}), ...data };
    renderMember(state.members[data.uid]);
  }
  renderCounts();
}

function onMessage(data) {
  const user = state.members[data.uid] || {};
  const line = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = user.username || String(data.uid);
  if (COLOR.test(user.roleColor || "")) who.style.color = user.roleColor;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = data.message;
  line.append(who, text);
  const chat = $("chat");
  chat.append(line);
  while (chat.children.length > CHAT_LIMIT) chat.firstElementChild.remove();
  chat.scrollTop = chat.scrollHeight;
  const node = document.querySelector(`.member[data-uid="${CSS.escape(String(data.uid))}"]`);
  if (node) {
    node.classList.add("spoke");
    setTimeout(() => node.classList.remove("spoke"), 1500);
  }
}

function onError(data) {
  const message = (data && data.message) || "error";
  showError(message);
  const info = Object.values(state.guilds).find((guild) => guild.id === state.wanted);
  $("login").hidden = !(info && info.passworded);
}

function onFrame(raw) {
  let frame;
  try {
    frame = JSON.parse(raw);
  } catch {
    return;
  }
  switch (frame.type) {
    case "server-list":
      state.guilds = frame.data || {};
      state.listed = true;
      renderGuilds();
      break;
    case "server-join":
      onJoin(frame.data);
      break;
    case "presence":
      if (frame.server === state.current) onPresence(frame.data);
      break;
    case "message":
      if (frame.server === state.current) onMessage(frame.data);
      break;
    case "error":
      onError(frame.data);
      break;
    default:
      break; // refresh_data, update-clientid: the server-join before them says it all
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/`);
  state.socket = socket;
  setConnection("connecting");
  socket.onopen = () => {
    state.retry = 500;
    setConnection("open");
  };
  socket.onmessage = (event) => onFrame(event.data);
  socket.onclose = () => {
    setConnection("closed");
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 10000);
  };
}

function pluginItem(entry) {
  const item = document.createElement("li");
  item.className = "plugin";
  item.dataset.name = entry.name;
  item.dataset.status = entry.status || "";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = entry.version ? `${entry.name} ${entry.version}` : entry.name;
  const status = document.createElement("span");
  status.className = "status";
  status.textContent = entry.status || "";
  item.append(label, status);
  if (entry.detail) {
    // What the plugin says of its configuration, e.g. a bus plugin's current role.
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = entry.detail;
    item.append(detail);
  }
  if (entry.error) {
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = entry.error;
    item.append(reason);
  }
  return item;
}

// Active plugins in their order (with the reason when one reports trouble), then every
// other installed plugin - failed, not configured, disabled, not selected - with its reason.
async function loadPlugins() {
  const list = $("plugins");
  try {
    const response = await fetch("/api/plugins", { cache: "no-store" });
    const description = await response.json();
    state.plugins = description;
    const byName = Object.fromEntries(description.plugins.map((entry) => [entry.name, entry]));
    list.replaceChildren(
      ...description.order.map((name) => pluginItem(byName[name] || { name })),
    );
    const active = new Set(description.order);
    const others = description.plugins.filter((entry) => !active.has(entry.name));
    $("other-plugins").replaceChildren(...others.map(pluginItem));
    $("other-plugins").hidden = others.length === 0;
    $("other-plugins-title").hidden = others.length === 0;
    renderEmptyState();
  } catch (error) {
    list.textContent = "could not load the plugin list";
  }
}

// -- charts: /metrics sampled every two seconds, drawn on a canvas ------------------------

function metricValues(text, name) {
  const values = [];
  for (const line of text.split("\n")) {
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{")) {
      const value = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(value)) values.push(value);
    }
  }
  return values;
}

function pushSample(series, value) {
  series.push(value);
  while (series.length > SAMPLES) series.shift();
}

function drawChart(id, series, digits) {
  const figure = $(id);
  const last = series.length ? series[series.length - 1] : 0;
  figure.querySelector(".value").textContent = last.toFixed(digits);
  figure.dataset.samples = String(series.length);
  figure.dataset.last = String(last);
  figure.dataset.peak = String(Math.max(0, ...series));
  const canvas = figure.querySelector("canvas");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  if (series.length < 2) return;
  const peak = Math.max(1, ...series);
  const step = width / (SAMPLES - 1);
  const offset = width - step * (series.length - 1);
  context.beginPath();
  series.forEach((value, index) => {
    const x = offset + index * step;
    const y = height - 2 - (value / peak) * (height - 4);
    if (index === 0) context.moveTo(x, y);
    else context.lineTo(x, y);
  });
  context.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--online");
  context.lineWidth = 2;
  context.stroke();
}

async function sampleMetrics() {
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    const text = await response.text();
    const now = performance.now();
    const viewers = metricValues(text, "dback_connections")[0] || 0;
    const events = metricValues(text, "dback_events_total").reduce((sum, v) => sum + v, 0);
    pushSample(state.viewers, viewers);
    if (state.lastEvents) {
      const seconds = (now - state.lastEvents.time) / 1000;
      const rate = seconds > 0 ? Math.max(0, events - state.lastEvents.total) / seconds : 0;
      pushSample(state.rates, rate);
    }
    state.lastEvents = { total: events, time: now };
    drawChart("chart-viewers", state.viewers, 0);
    drawChart("chart-events", state.rates, 1);
  } catch (error) {
    // The charts keep their last picture; the connection badge tells about the server.
  }
}

$("guilds").addEventListener("change", (event) => join(event.target.value));
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  join(state.wanted, $("password").value);
  $("password").value = "";
});
loadPlugins();
setInterval(loadPlugins, PLUGIN_REFRESH_MS);
sampleMetrics();
setInterval(sampleMetrics, SAMPLE_MS);
connect();
