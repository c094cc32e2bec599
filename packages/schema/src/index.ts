export * from "./types/index.js";
export * from "./validate.js";
export { schemas } from "./generated/schemas.js";
