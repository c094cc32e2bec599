/** Bad input to the generator (schema, config, SQL): a clear message, exit code 1 from the CLI. */
export class CodegenError extends Error {
  override readonly name = "CodegenError";
}
