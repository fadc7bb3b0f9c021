// The agent console: Preact components over the agent websocket protocol v1
// (docs/agent-protocol.md). Text reaches the page only as text nodes: nothing here writes
// markup from strings (tests/test_console_frontend.py greps the sources), so a customer's
// "<img onerror=…>" stays text.
import "./styles.css";
import "./voice.css";

import { render } from "preact";

import { App } from "./components/App";

const root = document.getElementById("root");
if (root) render(<App />, root);
