/**
 * Swift names per the Swift API Design Guidelines: acronyms are uniformly cased ("ID", "IDs",
 * "JID", "URL", "IPC"), types are UpperCamelCase, members lowerCamelCase.
 */
const ACRONYMS = new Map<string, string>(
  [
    "ID",
    "IDs",
    "JID",
    "JIDs",
    "URL",
    "URLs",
    "URI",
    "IPC",
    "CSI",
    "XML",
    "JSON",
    "SQL",
    "HTTP",
    "UUID",
    "NSE",
    "MAM",
    "OMEMO",
    "XMPP",
  ].map((a) => [a.toLowerCase(), a]),
);

const SWIFT_KEYWORDS = new Set(
  (
    "associatedtype class deinit enum extension fileprivate func import init inout internal let open " +
    "operator private protocol public rethrows static struct subscript typealias var break case continue " +
    "default defer do else fallthrough for guard if in repeat return switch where while as Any catch " +
    "false is nil super self Self throw throws true try Type"
  ).split(" "),
);

/** "appServerJid" -> ["app", "server", "jid"]; "disconnect-all" -> ["disconnect", "all"]. */
export function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
}

const cap = (w: string) => ACRONYMS.get(w) ?? w.charAt(0).toUpperCase() + w.slice(1);

/** TS type name -> Swift type name: "IpcMessage" -> "IPCMessage", "UrlShare" -> "URLShare". */
export function swiftTypeName(name: string): string {
  return words(name).map(cap).join("");
}

/** JSON key or tag -> Swift member name: "itemIds" -> "itemIDs", "disconnect-all" -> "disconnectAll". */
export function swiftMemberName(name: string): string {
  const ws = words(name);
  if (ws.length === 0) return "";
  const out = ws[0]! + ws.slice(1).map(cap).join("");
  return /^[0-9]/.test(out) ? `_${out}` : out;
}

/** Backticks for Swift keywords used as identifiers. */
export function escapeIdentifier(name: string): string {
  return SWIFT_KEYWORDS.has(name) ? `\`${name}\`` : name;
}

/** Name of the type generated for an inline object or enum: parent type + property. */
export function inlineTypeName(parentSwift: string, key: string): string {
  return parentSwift + swiftTypeName(key);
}

/** "AccountState" -> "account-state" (file names). */
export function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}
