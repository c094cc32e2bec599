// The README's event lists are the documentation users read: they must name exactly the events
// of the exported maps (SESSION_EVENTS and APP_CONTROLLER_EVENTS mirror the types at compile time).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { APP_CONTROLLER_EVENTS, SESSION_EVENTS } from "../src/index.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

/** Event names of the bullet list that follows `heading` in the README's Events section. */
function listed(heading: string): string[] {
  const section = readme.slice(readme.indexOf("## Events"));
  const start = section.indexOf(`${heading}:\n`);
  expect(start, `"${heading}:" in the Events section`).toBeGreaterThanOrEqual(0);
  const names: string[] = [];
  const lines = section.slice(start).split("\n").slice(1);
  while (lines[0]?.trim() === "") lines.shift(); // the blank line before the list
  for (const line of lines) {
    if (line.trim() === "") break;
    if (!line.startsWith("- ")) continue; // a continuation line
    // "- `a` (…), `b` (…)": every backticked name directly after "- " or ", ".
    for (const m of line.matchAll(/(?:^- |\), )`([a-z][a-z-]*)`/g)) names.push(m[1]!);
  }
  return names.sort();
}

describe("README events", () => {
  it("lists exactly the DurableSession events", () => {
    expect(listed("`DurableSession`")).toEqual([...SESSION_EVENTS].sort());
  });
  it("lists exactly the AppController events", () => {
    expect(listed("`AppController`")).toEqual([...APP_CONTROLLER_EVENTS].sort());
  });
});
