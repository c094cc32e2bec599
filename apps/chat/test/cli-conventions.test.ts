// Issue 11, item 13: this CLI behaves like the other Lichen CLIs (see @lichen/test-kit/vitest).
import { fileURLToPath } from "node:url";
import { expectCliConventions } from "@lichen/test-kit/vitest";
import { it } from "vitest";

it("prints --version; an unknown option exits 2 and is named", () => {
  expectCliConventions(fileURLToPath(new URL("..", import.meta.url)), [
    ["chats"],
    ["tail"],
    ["send"],
    ["login", "--jid", "alice@localhost", "--password", "pw"],
    ["nse"],
    ["share"],
    ["push", "enable", "--appserver", "push.localhost", "--node", "ab"],
    ["push", "status"],
  ]);
});
