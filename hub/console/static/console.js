/* channelhub agent console: plain JS over the agent websocket protocol v1
 * (docs/agent-protocol.md). State is rebuilt from the server's snapshot after every
 * (re)connect; messages are keyed by id so nothing shows twice; replies not yet acknowledged
 * are resent under the same client id, which the hub stores once. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var state = {offers: {}, conversations: {}, active: null, pending: {}, agent: null};
  var socket = null, backoff = 500, loggedOut = false;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function customerLabel(customer) {
    if (!customer) return "Unknown customer";
    var ident = (customer.identities || [])[0];
    return customer.name || (ident ? ident.kind + " " + ident.address.slice(0, 8) : "Visitor");
  }
  function showError(text) { $("errors").textContent = text || ""; }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function renderOffers() {
    var list = $("offers");
    list.textContent = "";
    Object.keys(state.offers).forEach(function (id) {
      var offer = state.offers[id];
      var item = el("li", "offer");
      item.dataset.conversation = id;
      item.appendChild(el("div", "", offer.channel + " · " + customerLabel(offer.customer)));
      item.appendChild(el("div", "preview", offer.preview));
      var accept = el("button", "accept", "Accept");
      accept.type = "button";
      accept.onclick = function () { send({type: "accept", conversation_id: id}); };
      var decline = el("button", "decline", "Decline");
      decline.type = "button";
      decline.onclick = function () {
        send({type: "decline", conversation_id: id, reason: "declined in console"});
        delete state.offers[id];
        renderOffers();
      };
      item.appendChild(accept);
      item.appendChild(decline);
      list.appendChild(item);
    });
  }

  function renderList() {
    var list = $("conversations");
    list.textContent = "";
    Object.keys(state.conversations).forEach(function (id) {
      var conversation = state.conversations[id];
      var item = el("li", id === state.active ? "active" : "",
        conversation.channel + " · " + customerLabel(conversation.customer));
      item.dataset.conversation = id;
      item.onclick = function () { state.active = id; render(); };
      list.appendChild(item);
    });
  }

  function renderConversation() {
    var conversation = state.conversations[state.active];
    $("conversation").hidden = !conversation;
    $("empty").hidden = !!conversation;
    if (!conversation) return;
    $("customer").textContent = customerLabel(conversation.customer) + " — " +
      conversation.channel + " (" + conversation.inbox + "), queue " + conversation.queue +
      ", priority " + conversation.priority;
    renderContext(conversation.customer || {});
    var instructions = $("instructions");
    instructions.textContent = "";
    (conversation.instructions || []).forEach(function (line) {
      instructions.appendChild(el("li", "", line));
    });
    var routing = [];
    if ((conversation.rules || []).length) routing.push("rules: " + conversation.rules.join(", "));
    if ((conversation.tags || []).length) routing.push("tags: " + conversation.tags.join(", "));
    $("routing").textContent = routing.join(" · ");
    var list = $("messages");
    list.textContent = "";
    conversation.messages.forEach(function (message) {
      var item = el("li", message.kind === "note" ? "note" : message.direction, message.text);
      item.dataset.id = message.id;
      var meta = message.direction === "inbound" ? "customer" : (message.author || "agent");
      if (message.kind === "note") meta += " · internal note";
      if (message.delivery_status) meta += " · " + message.delivery_status;
      if (message.delivery_error) meta += " · " + message.delivery_error;
      (message.notes || []).forEach(function (note) {
        item.appendChild(el("span", "note-flag", note));
      });
      renderFiles(item, message.attachments || []);
      item.appendChild(el("span", "meta", meta));
      list.appendChild(item);
    });
    list.scrollTop = list.scrollHeight;
    renderCompose(conversation.compose || {mode: "text"});
  }

  // page previews (faxes) and pictures inline, every other file as a download link
  function renderFiles(item, files) {
    if (!files.length) return;
    var box = el("div", "files", "");
    files.forEach(function (file) {
      var url = "/api/attachments/" + encodeURIComponent(file.id);
      var link = document.createElement("a");
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener";
      if (/^image\/(png|jpeg|gif)$/.test(file.content_type)) {
        var img = document.createElement("img");
        img.src = url;
        img.alt = file.name;
        img.loading = "lazy";
        link.appendChild(img);
        link.className = "preview";
      } else {
        link.textContent = file.name + " (" + Math.ceil(file.size / 1024) + " KB)";
        link.className = "download";
      }
      box.appendChild(link);
    });
    item.appendChild(box);
  }

  // what the channel allows now (WhatsApp's 24-hour window, SMS opt-outs), shown before typing
  function renderCompose(compose) {
    var info = $("compose-info"), picker = $("template-picker");
    var text = compose.reason || "";
    if (!text && compose.window_closes_at) {
      text = "Free text allowed until " + new Date(compose.window_closes_at * 1000).toLocaleString();
    }
    info.textContent = text;
    info.hidden = !text;
    info.className = compose.mode === "text" ? "" : "warning";
    var templating = compose.mode === "template";
    picker.hidden = !templating;
    $("reply-text").hidden = templating;
    $("reply-send").disabled = compose.mode === "blocked";
    // other channels the customer is known on (answer a fax by email)
    var via = $("reply-via");
    via.textContent = "";
    var alternatives = compose.alternatives || [];
    via.hidden = !alternatives.length || templating;
    if (alternatives.length) {
      via.appendChild(el("option", "", "reply here"));
      alternatives.forEach(function (option, index) {
        var item = el("option", "", "by " + option.channel + " to " + option.address +
                      " (" + option.inbox + ")");
        item.value = String(index + 1);
        item.dataset.inbox = option.inbox;
        item.dataset.address = option.address;
        via.appendChild(item);
      });
      via.options[0].value = "";
    }
    var select = $("template-name");
    select.textContent = "";
    (compose.templates || []).forEach(function (template) {
      var option = el("option", "", template.name + ": " + template.body);
      option.value = template.name;
      option.dataset.variables = JSON.stringify(template.variables || []);
      select.appendChild(option);
    });
    renderTemplateVariables();
  }

  function renderTemplateVariables() {
    var box = $("template-variables"), option = $("template-name").selectedOptions[0];
    box.textContent = "";
    JSON.parse(option ? option.dataset.variables : "[]").forEach(function (name) {
      var input = el("input");
      input.name = name;
      input.placeholder = name;
      box.appendChild(input);
    });
  }

  function money(value) {
    return (value || 0).toLocaleString(undefined, {style: "currency", currency: "EUR"});
  }

  function renderContext(customer) {
    var context = $("context");
    context.textContent = "";
    function row(label, value) {
      if (value === null || value === undefined || value === "") return;
      context.appendChild(el("dt", "", label));
      context.appendChild(el("dd", "", String(value)));
    }
    if (!customer.known) {
      row("Customer", "new contact (not in the CRM yet)");
    } else {
      row("Customer no.", customer.customer_number);
      row("Company", customer.company);
      row("Tier", customer.tier ? customer.tier +
          (customer.tier_source === "manual" ? " (set by hand)" : "") : "not rated");
      row("Lifetime value", money(customer.lifetime_value));
      row("Orders (12 months)", customer.orders_12m);
      if (customer.last_order_at) {
        row("Last order", new Date(customer.last_order_at * 1000).toLocaleDateString() +
            " (" + customer.days_since_last_order + " days ago)" +
            (customer.last_purchase ? ": " + customer.last_purchase : ""));
      }
      row("Pays on time", customer.payment_punctuality === null ? "no invoice due yet"
          : Math.round(customer.payment_punctuality * 100) + " %");
      row("Overdue invoices", customer.overdue_invoices);
    }
    row("Open conversations", customer.open_conversations);
    ((customer.attributes || {}).claims || []).forEach(function (claim) {
      row("Says they are", claim.kind + " " + claim.address +
          (claim.customer_number ? " (customer " + claim.customer_number + ")" : "") +
          " — not verified");
    });
    if ((customer.tags || []).length) row("Tags", customer.tags.join(", "));
    var history = $("history");
    history.textContent = "";
    (customer.history || []).forEach(function (past) {
      history.appendChild(el("li", "", new Date(past.created_at * 1000).toLocaleDateString() +
        " · " + past.channel + " · " + past.status + (past.subject ? " · " + past.subject : "")));
    });
  }

  function render() { renderOffers(); renderList(); renderConversation(); }

  function addMessage(conversationId, message) {
    var conversation = state.conversations[conversationId];
    if (!conversation) return;
    var known = conversation.messages.some(function (m) { return m.id === message.id; });
    if (!known) conversation.messages.push(message);
    if (conversationId === state.active) renderConversation();
  }

  var handlers = {
    hello: function (frame) {
      state.agent = frame.agent;
      $("agent-name").textContent = frame.agent.name;
    },
    snapshot: function (frame) {
      state.offers = {};
      frame.offers.forEach(function (offer) { state.offers[offer.conversation_id] = offer; });
      state.conversations = {};
      frame.conversations.forEach(function (c) { state.conversations[c.id] = c; });
      if (!state.conversations[state.active]) {
        state.active = Object.keys(state.conversations)[0] || null;
      }
      render();
      Object.keys(state.pending).forEach(function (clientId) { send(state.pending[clientId]); });
    },
    queue_state: function (frame) {
      $("supervision").hidden = false;
      var table = $("queues");
      table.textContent = "";
      var head = el("tr");
      ["Queue", "Waiting", "Offered", "Oldest (s)"].forEach(function (t) { head.appendChild(el("th", "", t)); });
      table.appendChild(head);
      frame.queues.forEach(function (queue) {
        var row = el("tr");
        row.dataset.queue = queue.name;
        [queue.name, queue.waiting, queue.offered, queue.oldest_wait].forEach(function (value) {
          row.appendChild(el("td", "", String(value)));
        });
        table.appendChild(row);
      });
      var agents = $("agents");
      agents.textContent = "";
      frame.agents.forEach(function (agent) {
        agents.appendChild(el("li", "agent", agent.id + ": " + agent.presence + ", " +
          agent.conversations + "/" + agent.capacity + (agent.wrap_up ? " (wrap-up)" : "")));
      });
    },
    offer: function (frame) { state.offers[frame.conversation_id] = frame; renderOffers(); },
    offer_revoked: function (frame) { delete state.offers[frame.conversation_id]; renderOffers(); },
    conversation: function (frame) {
      var conversation = frame.conversation;
      delete state.offers[conversation.id];
      state.conversations[conversation.id] = conversation;
      state.active = conversation.id;
      render();
    },
    message: function (frame) { addMessage(frame.conversation_id, frame.message); },
    reply_ack: function (frame) {
      delete state.pending[frame.client_id];
      addMessage(frame.conversation_id, frame.message);
    },
    delivery: function (frame) {
      var conversation = state.conversations[frame.conversation_id];
      if (!conversation) return;
      conversation.messages.forEach(function (m) {
        if (m.id === frame.message_id) { m.delivery_status = frame.status; m.delivery_error = frame.error; }
      });
      if (frame.conversation_id === state.active) renderConversation();
    },
    conversation_closed: function (frame) { remove(frame.conversation_id); },
    conversation_removed: function (frame) { remove(frame.conversation_id); },
    presence: function (frame) { $("presence").value = frame.status; },
    error: function (frame) {
      showError(frame.message);
      if (frame.ref && state.pending[frame.ref] && frame.code !== "unavailable") {
        delete state.pending[frame.ref];
      }
    },
    preview: function (frame) {
      if (frame.conversation_id !== state.active || !frame.encoding) return;
      $("draft-info").textContent = frame.segments + " SMS part" + (frame.segments === 1 ? "" : "s") +
        " (" + frame.encoding + (frame.unicode_characters.length ?
          ", because of " + frame.unicode_characters.join(" ") : "") + ")";
    },
    pong: function () {}
  };

  function remove(conversationId) {
    delete state.conversations[conversationId];
    if (state.active === conversationId) state.active = Object.keys(state.conversations)[0] || null;
    render();
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws/agent";
    socket = new WebSocket(url);
    socket.onopen = function () {
      backoff = 500;
      $("connection").textContent = "online";
      $("connection").className = "badge online";
    };
    socket.onmessage = function (event) {
      var frame = JSON.parse(event.data);
      var handler = handlers[frame.type];
      if (handler) handler(frame);
    };
    socket.onclose = function (event) {
      $("connection").textContent = "offline";
      $("connection").className = "badge";
      if (loggedOut) return;
      if (event.code === 4401) { showLogin(); return; }
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
  }

  function showLogin() {
    $("app").hidden = true;
    $("login").hidden = false;
  }
  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    loggedOut = false;
    connect();
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    $("login-error").textContent = "";
    fetch("/api/login", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({username: $("username").value, password: $("password").value}),
      credentials: "same-origin"
    }).then(function (response) {
      if (response.ok) { showApp(); return; }
      return response.json().then(function (body) {
        $("login-error").textContent = body.message || "Login failed";
      });
    }).catch(function () { $("login-error").textContent = "The hub is not reachable"; });
  });

  $("reply-form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (!state.active) return;
    var frame;
    if (!$("template-picker").hidden && !$("reply-note").checked) {
      var variables = {};
      Array.prototype.forEach.call($("template-variables").querySelectorAll("input"), function (input) {
        variables[input.name] = input.value;
      });
      frame = {type: "reply", conversation_id: state.active, client_id: newId(),
               template: $("template-name").value, variables: variables};
    } else {
      var text = $("reply-text").value.trim();
      if (!text) return;
      frame = {
        type: $("reply-note").checked ? "note" : "reply",
        conversation_id: state.active, client_id: newId(), text: text
      };
      var via = $("reply-via");
      if (frame.type === "reply" && !via.hidden && via.value) {
        var option = via.options[via.selectedIndex];
        frame.via = option.dataset.inbox;
        frame.to = option.dataset.address;
      }
    }
    var chosen = $("reply-files").files;
    if (frame.type === "reply" && chosen && chosen.length) {
      $("draft-info").textContent = "Uploading " + chosen.length + " file(s)…";
      uploadAll(Array.prototype.slice.call(chosen)).then(function (tokens) {
        frame.attachments = tokens;
        $("reply-files").value = "";
        sendReply(frame);
      }).catch(function (error) {
        $("draft-info").textContent = "";
        showError(error.message || "upload failed");
      });
      return;
    }
    sendReply(frame);
  });

  function sendReply(frame) {
    state.pending[frame.client_id] = frame;
    send(frame);
    $("reply-text").value = "";
    $("draft-info").textContent = "";
  }

  // files go to /api/uploads first; the reply carries the tokens it answers
  function uploadAll(files) {
    var tokens = [];
    return files.reduce(function (previous, file) {
      return previous.then(function () {
        return fetch("/api/uploads", {
          method: "POST",
          credentials: "same-origin",
          headers: {
            "Content-Type": file.type || "application/octet-stream",
            "X-Filename": encodeURIComponent(file.name)
          },
          body: file
        }).then(function (response) {
          return response.json().then(function (body) {
            if (!response.ok) throw new Error(file.name + ": " + (body.message || response.status));
            tokens.push(body.token);
          });
        });
      });
    }, Promise.resolve()).then(function () { return tokens; });
  }
  $("template-name").addEventListener("change", renderTemplateVariables);
  var previewTimer = null;
  $("reply-text").addEventListener("input", function () {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(function () {
      var text = $("reply-text").value;
      if (state.active && text && !$("reply-note").checked) {
        send({type: "preview", conversation_id: state.active, text: text});
      } else {
        $("draft-info").textContent = "";
      }
    }, 250);
  });
  $("reply-text").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("reply-form").requestSubmit();
    }
  });
  $("close-conversation").addEventListener("click", function () {
    if (state.active) {
      send({type: "close", conversation_id: state.active, disposition: $("disposition").value});
    }
  });
  $("presence").addEventListener("change", function () {
    send({type: "presence", status: $("presence").value});
  });
  $("logout").addEventListener("click", function () {
    loggedOut = true;
    fetch("/api/logout", {method: "POST", credentials: "same-origin"}).finally(function () {
      if (socket) socket.close();
      showLogin();
    });
  });

  fetch("/api/me", {credentials: "same-origin"}).then(function (response) {
    if (response.ok) showApp(); else showLogin();
  }).catch(showLogin);
})();
