import { mkdirSync } from 'node:fs';
import { parse, PGlite, protocol, type Transaction } from '@electric-sql/pglite';
import { lockDataDirectory } from './data-directory-lock.ts';
import { MAX_PREPARED_STATEMENTS, type Database, type DatabaseOptions, type QueryResult, type SqlExecutor } from './database.ts';
import { assertSchemaName } from './schema-name.ts';

type BackendMessage = Awaited<ReturnType<PGlite['execProtocolStream']>>[number];

/**
 * The statements of one PGlite instance prepared under their names (the `name` of SqlExecutor.query), as
 * the PostgreSQL driver prepares them per connection: PGlite's own `query` parses and plans its text on every
 * call, which on this thread costs more than running it (a read by id: about half its CPU, two thirds once an
 * access condition joins it). Its steps are PGlite's own (parse, describe, bind, execute, sync: one message
 * each), with the parse and the describe done once per name and their answer kept.
 */
class PreparedStatements {
  /** By name, least recently run first (a Map iterates in insertion order). */
  private readonly statements = new Map<string, { text: string; parameterTypes: number[]; rowDescription?: BackendMessage }>();

  constructor(
    private readonly pg: PGlite,
    private readonly max: number,
  ) {}

  /** Runs the statement `name` stands for; the caller holds PGlite's query lock (and its transaction lock outside a transaction). */
  async run<Row>(name: string, sql: string, params: unknown[]): Promise<QueryResult<Row>> {
    const send = (message: Uint8Array) => this.pg.execProtocolStream(message, { syncToFs: false });
    const messages: BackendMessage[] = [];
    try {
      const kept = this.statements.get(name);
      const statement = kept?.text === sql ? kept : await this.prepare(name, sql, send);
      // Run last, so kept longest; the least recently run closed past the bound (MAX_PREPARED_STATEMENTS).
      this.statements.delete(name);
      this.statements.set(name, statement);
      for (const [oldest] of this.statements) {
        if (this.statements.size <= this.max) break;
        this.statements.delete(oldest);
        await send(protocol.serialize.close({ type: 'S', name: oldest }));
      }
      const values = params.map((value, index) => {
        if (value === null || value === undefined) return null;
        const serializer = this.pg.serializers[statement.parameterTypes[index]!];
        return serializer ? serializer(value) : String(value);
      });
      if (statement.rowDescription) messages.push(statement.rowDescription);
      messages.push(...(await send(protocol.serialize.bind({ statement: name, values }))), ...(await send(protocol.serialize.execute({}))));
    } finally {
      await send(protocol.serialize.sync());
    }
    const result = parse.parseResults(messages, this.pg.parsers)[0]!;
    return { rows: result.rows as Row[], rowCount: result.affectedRows ?? result.rows.length };
  }

  private async prepare(name: string, text: string, send: (message: Uint8Array) => Promise<BackendMessage[]>) {
    this.statements.delete(name);
    try {
      // A name another text had first (never two in this code, as the PostgreSQL driver would refuse it) is prepared again.
      await send(protocol.serialize.close({ type: 'S', name }));
      await send(protocol.serialize.parse({ name, text }));
      const described = await send(protocol.serialize.describe({ type: 'S', name }));
      const statement = { text, parameterTypes: parse.parseDescribeStatementResults(described), rowDescription: described.find((message) => message.name === 'rowDescription') };
      this.statements.set(name, statement);
      return statement;
    } catch (error) {
      // A statement parsed but not described would make the next parse under its name fail: closed after the error's sync.
      await send(protocol.serialize.sync());
      await send(protocol.serialize.close({ type: 'S', name }));
      throw error;
    }
  }
}

function wrap(target: PGlite | Transaction, pg: PGlite, statements: PreparedStatements): SqlExecutor {
  const inTransaction = target !== pg;
  return {
    async query<Row>(sql: string, params: unknown[] = [], name?: string): Promise<QueryResult<Row>> {
      if (name !== undefined) {
        const run = () => pg._runExclusiveQuery(() => statements.run<Row>(name, sql, params));
        // Outside a transaction, as PGlite's own query: after any transaction open, and written to its files after.
        if (inTransaction) return run();
        return pg._runExclusiveTransaction(async () => {
          const result = await run();
          await pg.syncToFs();
          return result;
        });
      }
      const result = await target.query<Row>(sql, params);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
  };
}

export async function openPglite(dataDir: string, options: DatabaseOptions): Promise<Database> {
  const inMemory = dataDir === '' || dataDir.startsWith('memory://');
  if (!inMemory) mkdirSync(dataDir, { recursive: true });
  const unlock = inMemory ? () => {} : lockDataDirectory(dataDir);
  const db = new PGlite(inMemory ? undefined : dataDir, options.pgliteDataDir ? { loadDataDir: options.pgliteDataDir } : {});
  try {
    await db.waitReady;
  } catch (error) {
    unlock();
    throw error;
  }
  if (options.schema) {
    const schema = assertSchemaName(options.schema);
    await db.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}`);
  }
  return pgliteDatabase(db, unlock, options.maxPreparedStatements);
}

/** The Database over an open PGlite instance; `onClose` runs once it is closed (releasing its directory's lock). */
export function pgliteDatabase(db: PGlite, onClose: () => void = () => {}, maxPreparedStatements = MAX_PREPARED_STATEMENTS): Database {
  const statements = new PreparedStatements(db, maxPreparedStatements);
  const executor = wrap(db, db, statements);
  return {
    driver: 'pglite',
    query: executor.query,
    // PGlite holds one connection and serialises transactions behind its own mutex.
    transaction: (work) => db.transaction((tx) => work(wrap(tx, db, statements))),
    exec: async (sql) => {
      await db.exec(sql);
    },
    // One instance, one session: nothing is ever missed.
    listen: async (channel, onMessage) => {
      await db.listen(channel, onMessage);
    },
    close: async () => {
      await db.close();
      onClose();
    },
  };
}
