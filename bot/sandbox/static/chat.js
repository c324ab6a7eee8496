// The sandbox chat: renders /api/state, refreshes on server-sent events, posts messages and button presses.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const log = document.getElementById("log");
const menu = document.getElementById("menu");
const text = document.getElementById("text");

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function toast(message) {
  const line = document.createElement("div");
  line.className = "toast";
  line.textContent = message;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}

function render(state) {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.replaceChildren();
  for (const line of state.lines) {
    const div = document.createElement("div");
    div.className = "line " + line.from;
    div.dataset.id = line.id;
    if (line.from === "user") {
      div.textContent = line.text;
    } else {
      const body = document.createElement("div");
      body.className = "body";
      body.innerHTML = line.html;  // the bot's Telegram HTML, validated by the Bot API server's parser
      if (line.image) {
        const img = document.createElement("img");
        img.src = line.image;
        img.alt = "chart";
        img.className = "photo";
        img.onerror = () => img.replaceWith("🖼 ");
        div.appendChild(img);
      }
      div.appendChild(body);
      if (line.edited) {
        const mark = document.createElement("span");
        mark.className = "edited";
        mark.textContent = "edited";
        div.appendChild(mark);
      }
      if (line.buttons.length) {
        const keyboard = document.createElement("div");
        keyboard.className = "keyboard";
        for (const row of line.buttons) {
          const r = document.createElement("div");
          r.className = "row";
          for (const b of row) {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = b.text;
            button.addEventListener("click", async () => {
              try {
                const result = await post("/api/click", { message_id: line.message_id, data: b.data });
                if (result.answer) toast(result.answer);
              } catch (e) { toast(String(e.message || e)); }
            });
            r.appendChild(button);
          }
          keyboard.appendChild(r);
        }
        div.appendChild(keyboard);
      }
    }
    log.appendChild(div);
  }
  const notice = document.getElementById("notice");
  notice.replaceChildren();
  if (state.notice) {
    const text = document.createElement("span");
    text.textContent = state.notice.text;
    notice.appendChild(text);
    if (state.notice.replay) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Replay recent history";
      button.addEventListener("click", async () => {
        try { await post("/api/replay", {}); await refresh(); } catch (e) { toast(String(e.message || e)); }
      });
      notice.appendChild(button);
    }
  }
  notice.hidden = !state.notice;
  menu.replaceChildren();
  for (const c of state.commands) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "/" + c.command;
    button.title = c.description;
    button.addEventListener("click", () => { text.value = "/" + c.command + " "; text.focus(); });
    menu.appendChild(button);
  }
  if (atBottom) log.scrollTop = log.scrollHeight;
}

async function refresh() {
  const response = await fetch("/api/state", { cache: "no-store" });
  if (response.ok) render(await response.json());
}

document.getElementById("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = text.value.trim();
  if (!message) return;
  text.value = "";
  try { await post("/api/send", { text: message }); await refresh(); } catch (e) { toast(String(e.message || e)); }
});

const events = new EventSource("/api/events");
events.addEventListener("changed", refresh);
events.onerror = () => setTimeout(refresh, 1000);
refresh();
