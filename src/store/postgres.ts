import pg, { type CustomTypesConfig } from 'pg';
import { MAX_PREPARED_STATEMENTS, type Database, type DatabaseOptions, type QueryResult, type SqlExecutor } from './database.ts';
import { assertSchemaName } from './schema-name.ts';

/**
 * This store's own type parsers, given to its pool rather than set on the `pg` module, so that another
 * user of `pg` in the same process (a migration tool, a test, a bench) keeps the driver's defaults.
 */
const storeTypes: CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    // timestamptz stays a string: the resource's meta.lastUpdated is the source of truth, not a JS Date.
    if (oid === pg.types.builtins.TIMESTAMPTZ) return (value: string) => value;
    // bigint (history sequence numbers) fits easily in a JS number for this server's lifetime.
    if (oid === pg.types.builtins.INT8) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  }) as CustomTypesConfig['getTypeParser'],
};

/** How long getting a connection may take (a new one, or a pooled one freed by another request). */
const CONNECT_TIMEOUT_MS = 10_000;

export async function openPostgres(url: string, options: DatabaseOptions): Promise<Database> {
  const schema = options.schema ? assertSchemaName(options.schema) : undefined;
  if (schema) {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } finally {
      await admin.end();
    }
  }
  // JIT compilation pays off for long analytic queries, not for searches answered in milliseconds: at a
  // million resources it added ~8 ms of compiling to a search plan that ran without it in the same time.
  const settings = ['-c jit=off', ...(schema ? [`-c search_path=${schema}`] : [])];
  const pool = new pg.Pool({
    connectionString: url,
    max: Number(process.env.PG_POOL_SIZE ?? 10),
    options: settings.join(' '),
    types: storeTypes,
    // A server that stops answering (a host gone, a network cut) fails the request instead of holding it
    // forever; so does a pool whose connections all stay busy that long.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  // An idle client losing its server must not crash the process; the next query reports the failure.
  pool.on('error', () => {});
  const listener = notificationListener(() => new pg.Client({ connectionString: url, options: settings.join(' '), connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true }));

  // The names each connection has prepared (node-pg prepares a name once per connection and keeps it): a
  // connection past the bound is closed when released, its statements with it, and the pool opens another.
  const maxPrepared = options.maxPreparedStatements ?? MAX_PREPARED_STATEMENTS;
  const preparedOn = new WeakMap<pg.PoolClient, Set<string>>();
  const noteName = (client: pg.PoolClient, name: string | undefined) => {
    if (name === undefined) return;
    const names = preparedOn.get(client) ?? new Set<string>();
    preparedOn.set(client, names.add(name));
  };
  const overBound = (client: pg.PoolClient) => (preparedOn.get(client)?.size ?? 0) > maxPrepared;
  const ignoreConnectionError = () => {};

  const query = async <Row>(sql: string, params: unknown[] = [], name?: string): Promise<QueryResult<Row>> => {
    if (name === undefined) {
      const result = await pool.query({ text: sql, values: params });
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
    }
    const client = await pool.connect();
    // As in a transaction: the connection dropping while checked out must not end the process (unheard
    // 'error'); the failure reaches the caller through the query.
    client.on('error', ignoreConnectionError);
    try {
      const result = await client.query({ name, text: sql, values: params });
      noteName(client, name);
      client.off('error', ignoreConnectionError);
      client.release(overBound(client));
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      // As pool.query does: a connection whose statement failed is not given back to the pool.
      client.off('error', ignoreConnectionError);
      client.release(error instanceof Error ? error : true);
      throw error;
    }
  };

  return {
    driver: 'postgres',
    query,
    async transaction(work) {
      const client = await pool.connect();
      // A checked-out client whose connection drops emits 'error', which unheard would end the process;
      // the failure reaches the transaction anyway, through the query it was running or the next one.
      client.on('error', ignoreConnectionError);
      const tx: SqlExecutor = {
        async query<Row>(sql: string, params: unknown[] = [], name?: string) {
          const result = await client.query(name ? { name, text: sql, values: params } : { text: sql, values: params });
          noteName(client, name);
          return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
        },
      };
      try {
        await client.query('BEGIN');
        const value = await work(tx);
        await client.query('COMMIT');
        client.off('error', ignoreConnectionError);
        client.release(overBound(client));
        return value;
      } catch (error) {
        // A connection that cannot even roll back is broken: destroy it rather than return it to the pool.
        const broken = await client.query('ROLLBACK').then(() => false, () => true);
        client.off('error', ignoreConnectionError);
        client.release(broken);
        throw error;
      }
    },
    async exec(sql) {
      await pool.query(sql);
    },
    listen: (channel, onMessage, onGap) => listener.listen(channel, onMessage, onGap),
    close: async () => {
      await listener.close();
      await pool.end();
    },
  };
}

/** How long a lost listening connection waits before connecting again. */
const RELISTEN_DELAY_MS = 1000;

/**
 * The connections that LISTEN, outside the pool (each holds its own for the store's life): one per channel,
 * connected again when lost, and `onGap` called then, since notifications sent meanwhile are not replayed.
 */
function notificationListener(connect: () => pg.Client) {
  const clients = new Set<pg.Client>();
  let closed = false;
  return {
    async listen(channel: string, onMessage: (payload: string) => void, onGap: () => void): Promise<void> {
      if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`not a channel name: ${channel}`);
      const open = async (): Promise<void> => {
        const client = connect();
        let lost = false;
        const reconnect = () => {
          if (lost || closed) return;
          lost = true;
          clients.delete(client);
          void client.end().catch(() => {});
          onGap();
          const retry = () => {
            if (!closed) open().then(onGap, () => setTimeout(retry, RELISTEN_DELAY_MS).unref());
          };
          setTimeout(retry, RELISTEN_DELAY_MS).unref();
        };
        client.on('notification', (message) => {
          if (message.channel === channel) onMessage(message.payload ?? '');
        });
        client.on('error', reconnect);
        client.on('end', reconnect);
        clients.add(client);
        try {
          await client.connect();
          await client.query(`LISTEN ${channel}`);
          // Listening alone does not keep the process alive (the pool's idle connections do not either).
          (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
        } catch (error) {
          lost = true;
          clients.delete(client);
          await client.end().catch(() => {});
          throw error;
        }
      };
      // The database may be down as the server starts (it waits for it): listening then begins once it is back.
      await open().catch(() => {
        const retry = () => {
          if (!closed) open().then(onGap, () => setTimeout(retry, RELISTEN_DELAY_MS).unref());
        };
        setTimeout(retry, RELISTEN_DELAY_MS).unref();
      });
    },
    async close(): Promise<void> {
      closed = true;
      await Promise.all([...clients].map((client) => client.end().catch(() => {})));
      clients.clear();
    },
  };
}
