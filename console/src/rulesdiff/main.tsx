// The admins' page for replaying a rules change (/console/rules-diff): paste or upload a rules
// file, see `rules check` errors by line and column, or what the change would do to the stored
// traffic of a period (POST /api/rules/diff, docs/rules.md). Text reaches the page only as
// text nodes, as in the console.
import "./rulesdiff.css";

import { render } from "preact";

import { RulesDiffPage } from "./RulesDiffPage";

const root = document.getElementById("root");
if (root) render(<RulesDiffPage />, root);
