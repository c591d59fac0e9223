// dback status page: the d-zone protocol, rendered as a live member grid.
// Everything from the server is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOR = /^#[0-9a-fA-F]{6}$/;
const STATUSES = new Set(["online", "idle", "dnd", "offline"]);
const CHAT_LIMIT = 200;

const state = {
  socket: null,
  guilds: {},       // snowflake -> {id, name, passworded, default}
  current: null,    // snowflake of the guild shown
  wanted: null,     // short id the user picked
  members: {},      // uid -> user record
  retry: 500,
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

function renderGuilds() {
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

async function loadPlugins() {
  const list = $("plugins");
  try {
    const response = await fetch("/api/plugins", { cache: "no-store" });
    const description = await response.json();
    const byName = Object.fromEntries(description.plugins.map((entry) => [entry.name, entry]));
    list.replaceChildren();
    for (const name of description.order) {
      const entry = byName[name] || { name };
      const item = document.createElement("li");
      item.className = "plugin";
      item.dataset.name = name;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = entry.version ? `${name} ${entry.version}` : name;
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = entry.status || "";
      item.append(label, status);
      list.append(item);
    }
  } catch (error) {
    list.textContent = "could not load the plugin list";
  }
}

$("guilds").addEventListener("change", (event) => join(event.target.value));
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  join(state.wanted, $("password").value);
  $("password").value = "";
});
loadPlugins();
connect();
