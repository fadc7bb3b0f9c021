/* channelhub web chat widget: <script src="https://hub.example/chat/widget.js" defer></script>
 * Vanilla JS, no dependencies. Text is always rendered with textContent (never as HTML).
 * Unacknowledged messages are resent after a reconnect under the same client id, so the hub
 * stores each one exactly once. */
(function () {
  "use strict";
  var WS_PATH = "__CHANNELHUB_WS_PATH__";
  var script = document.currentScript;
  var base = new URL(script ? script.src : location.href);
  var url = (base.protocol === "https:" ? "wss:" : "ws:") + "//" + base.host + WS_PATH;
  var storeKey = "channelhub:token:" + url;
  var socket = null, backoff = 500, seen = {}, pending = {}, order = [];

  // German or English: <script … data-lang="de"> decides, else the visitor's browser
  var chosen = (script && script.dataset.lang) || navigator.language || "";
  var german = /^de\b/i.test(chosen);
  var words = german
    ? {type: "Nachricht schreiben", send: "Senden", email: "Ihre E-Mail (optional)",
       automatic: "Automatische Antwort"}
    : {type: "Type a message", send: "Send", email: "Your email (optional)",
       automatic: "Automatic reply"};

  var css = "#channelhub-chat{position:fixed;right:16px;bottom:16px;width:320px;max-height:480px;" +
    "max-width:calc(100vw - 32px);box-sizing:border-box;" +
    "display:flex;flex-direction:column;font:14px system-ui,sans-serif;background:#fff;" +
    "border:1px solid #ccc;border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.15);z-index:99999}" +
    "#channelhub-chat header{background:#1f4e79;color:#fff;padding:8px 12px;border-radius:8px 8px 0 0}" +
    "#channelhub-chat .chh-log{flex:1;overflow-y:auto;padding:8px;min-height:200px}" +
    "#channelhub-chat .chh-msg{margin:4px 0;padding:6px 8px;border-radius:6px;max-width:85%;" +
    "white-space:pre-wrap;word-wrap:break-word}" +
    "#channelhub-chat .chh-you{background:#e3effa;margin-left:auto}" +
    "#channelhub-chat .chh-agent{background:#f1f1f1}" +
    "#channelhub-chat .chh-automatic{background:#fff;border:1px dashed #888}" +
    "#channelhub-chat .chh-label{display:block;font-size:11px;color:#555}" +
    "#channelhub-chat .chh-system{color:#666;font-size:12px;text-align:center}" +
    "#channelhub-chat .chh-pending{opacity:.6}" +
    "#channelhub-chat form{display:flex;border-top:1px solid #ddd}" +
    "#channelhub-chat textarea{flex:1;min-width:0;border:0;padding:8px;resize:none;font:inherit}" +
    "#channelhub-chat .chh-contact{border:0;border-top:1px solid #ddd;padding:6px 8px;font:inherit}" +
    "#channelhub-chat button{border:0;background:#1f4e79;color:#fff;padding:0 14px}" +
    // phones: the whole width, above the keyboard
    "@media (max-width:480px){#channelhub-chat{left:8px;right:8px;bottom:8px;width:auto;" +
    "max-width:none;max-height:70vh}}";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var style = el("style"); style.textContent = css; document.head.appendChild(style);
  var box = el("div"); box.id = "channelhub-chat";
  var header = el("header", "", "Chat");
  var log = el("div", "chh-log"); log.setAttribute("aria-live", "polite");
  var data = script ? script.dataset : {};
  var contactKey = "channelhub:contact:" + url;
  var contact = null;
  if (data.askContact !== undefined) {  // <script … data-ask-contact>: an optional email field
    contact = el("input", "chh-contact");
    contact.type = "email";
    contact.placeholder = words.email;
    contact.setAttribute("aria-label", words.email);
    contact.value = localStorage.getItem(contactKey) || "";
    contact.addEventListener("change", function () {
      localStorage.setItem(contactKey, contact.value.trim());
      if (socket) socket.close();  // say hello again with it
    });
  }
  var form = el("form");
  var input = el("textarea", "chh-input"); input.rows = 2; input.placeholder = words.type;
  input.setAttribute("aria-label", words.type);
  var send = el("button", "chh-send", words.send); send.type = "submit";
  form.appendChild(input); form.appendChild(send);
  box.appendChild(header); box.appendChild(log);
  if (contact) box.appendChild(contact);
  box.appendChild(form);
  document.body.appendChild(box);

  function show(from, text, id, automatic) {
    if (id && seen[id]) return seen[id];
    var node = el("div", "chh-msg chh-" + from + (automatic ? " chh-automatic" : ""));
    if (automatic) node.appendChild(el("span", "chh-label", words.automatic));
    node.appendChild(document.createTextNode(text));
    if (id) { seen[id] = node; node.dataset.id = id; }
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return node;
  }
  function system(text) { log.appendChild(el("div", "chh-msg chh-system", text)); }
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function transmit(clientId) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({type: "message", client_id: clientId, text: pending[clientId].text}));
    }
  }

  function connect() {
    socket = new WebSocket(url);
    socket.onopen = function () {
      backoff = 500;
      var hello = {type: "hello"};
      var token = localStorage.getItem(storeKey);
      if (token) hello.token = token;
      var typed = localStorage.getItem(contactKey);
      if (contact && typed) hello.email = typed;
      // a logged-in customer, vouched for by the host page (docs/webchat.md)
      if (data.customer && data.expires && data.signature) {
        hello.customer = data.customer;
        hello.expires = parseInt(data.expires, 10);
        hello.signature = data.signature;
      }
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "welcome") {
        localStorage.setItem(storeKey, frame.token);
        header.textContent = frame.title;
        if (!log.childElementCount) system(frame.welcome);
        frame.history.forEach(function (m) { show(m.from, m.text, m.id, m.automatic); });
        order.forEach(transmit);
      } else if (frame.type === "ack") {
        var entry = pending[frame.client_id];
        if (entry) {
          entry.node.classList.remove("chh-pending");
          entry.node.dataset.id = frame.id;
          seen[frame.id] = entry.node;
          delete pending[frame.client_id];
          order = order.filter(function (c) { return c !== frame.client_id; });
        }
      } else if (frame.type === "message") {
        show(frame.from, frame.text, frame.id, frame.automatic);
      } else if (frame.type === "error") {
        if ((frame.code === "rate_limited" || frame.code === "unavailable") && pending[frame.client_id]) {
          setTimeout(function () { transmit(frame.client_id); }, 1500);
        } else if (frame.code !== "invalid_token" && frame.code !== "invalid_customer_signature") {
          system(frame.message);
          if (frame.client_id && pending[frame.client_id]) {
            pending[frame.client_id].node.classList.add("chh-failed");
            delete pending[frame.client_id];
            order = order.filter(function (c) { return c !== frame.client_id; });
          }
        }
      }
    };
    socket.onclose = function () {
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    var clientId = newId();
    pending[clientId] = {text: text, node: show("you", text)};
    pending[clientId].node.classList.add("chh-pending");
    order.push(clientId);
    transmit(clientId);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  connect();
})();
