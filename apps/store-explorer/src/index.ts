export * from "./inspect.js";
export { table, cell, time, relative, type Column } from "./format.js";
