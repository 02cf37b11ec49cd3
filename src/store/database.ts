/**
 * The one SQL contract both drivers satisfy: the embedded PGlite and a PostgreSQL server through `pg`.
 * Everything above this file writes plain PostgreSQL with `$n` placeholders and never knows which runs it.
 */
export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface SqlExecutor {
  /**
   * `name` marks a statement whose text never changes (the create statement, index writes): the
   * PostgreSQL driver prepares it once per connection instead of planning it on every call.
   */
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[], name?: string): Promise<QueryResult<Row>>;
}

export interface Database extends SqlExecutor {
  readonly driver: 'pglite' | 'postgres';
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Runs a multi-statement script (migrations). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
  /**
   * Calls `onMessage` with the payload of each notification on `channel` (`NOTIFY`, `pg_notify`) from any
   * session of the database, once its transaction commits; `onGap` when some may have been missed (a lost
   * connection), before listening again. Listens until the database is closed. Absent on a transaction's view.
   */
  listen?(channel: string, onMessage: (payload: string) => void, onGap: () => void): Promise<void>;
}

export interface DatabaseOptions {
  /** PostgreSQL schema to create and use; lets test files share one server without sharing tables. */
  schema?: string;
  /**
   * PGlite only: start from this dumped data directory (`PGlite.dumpDataDir`) instead of running initdb,
   * which is most of a new PGlite's start (4.0 s of CPU, 1.4 s from a dump). The tests use it.
   */
  pgliteDataDir?: Blob;
  /** Named statements a connection keeps prepared at most (MAX_PREPARED_STATEMENTS); the tests set fewer. */
  maxPreparedStatements?: number;
}

/**
 * Named statements (SqlExecutor.query's `name`) one connection keeps prepared at most. Each holds its parsed
 * statement and plans in the database session's memory, and their names come from their texts (preparedName):
 * a client varying a search's shape would otherwise add statements for as long as the connection lives. Far
 * above what the server's own texts need (reads, creates and identifier searches: a few hundred at most).
 */
export const MAX_PREPARED_STATEMENTS = 1000;

/**
 * A Database view of an open transaction: queries run in it, and a nested `transaction` joins it rather
 * than opening another, so code written for one write (the repository) composes into a bundle's
 * single all-or-nothing transaction.
 */
export function joinTransaction(tx: SqlExecutor, driver: Database['driver']): Database {
  return {
    driver,
    query: (sql, params, name) => tx.query(sql, params, name),
    transaction: (work) => work(tx),
    exec: async () => {
      throw new Error('exec is not available inside a transaction');
    },
    close: async () => {},
  };
}
