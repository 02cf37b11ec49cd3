/**
 * A PostgreSQL schema name the stores accept (`DatabaseOptions.schema`): it is written into SQL as an
 * identifier, so anything but a plain lower-case name is refused. Its own module, so that both drivers
 * use it without importing database.ts, which imports them.
 */
export function assertSchemaName(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema name: ${schema}`);
  return schema;
}
