import { createHmac, randomBytes } from 'node:crypto';
import type http from 'node:http';
import { TokenError, type Authenticator } from '../auth/tokens';
import { feedCursor, TaskChannel, UserTasksChannel, type UserAssigns } from '../channels/task-channel';
import { TaskEventRelay } from '../channels/task-events';
import { BusNodeLink, BusPubSubAdapter } from '../bus/adapters';
import type { Bus } from '../bus/bus';
import type { Config } from '../config';
import type { Logger } from '../log';
import type { TaskCreationLimit } from '../db/rate-limit';
import { RealtimeServer, type CheckOrigin } from '../realtime';
import type { TaskService } from '../tasks/service';
import { clientLogLimit, type PartContext } from './context';

export interface TaskRealtime {
  realtime: RealtimeServer<UserAssigns>;
  relay: TaskEventRelay;
}

/**
 * The Phoenix channel server with the task channels on it (`task:<id>`, `tasks:<user>`), attached
 * to `server`, and the relay that brings committed task events to its sockets: at once for events
 * committed here, through NOTIFY for other processes' (with a cluster bus). Broadcasts between
 * sockets cross processes through the bus too, and so do long-poll requests that land on a
 * process other than the one holding their session.
 */
export async function startTaskRealtime(
  ctx: PartContext,
  opts: {
    server: http.Server;
    tasks: TaskService;
    auth: Authenticator;
    bus: Bus | undefined;
    /** The per-user task-creation limit, shared with REST. */
    taskLimit: TaskCreationLimit;
    /** The base URL a socket's client reached pyre at (output URLs are made absolute against it). */
    baseUrlOf?: (headers: http.IncomingHttpHeaders) => string;
  },
): Promise<TaskRealtime> {
  const { logger } = ctx;
  const { tasks, auth, bus } = opts;
  // Broadcasts and presence cross processes on the bus; long-poll sessions answer on every
  // process, their requests forwarded to the process that holds the session.
  const pubsub = bus ? new BusPubSubAdapter(bus) : undefined;
  const longpollBus = bus ? new BusNodeLink(bus) : undefined;
  const longpollSecret = longpollKey(ctx.config, bus !== undefined, logger);
  const realtime = new RealtimeServer<UserAssigns>({
    checkOrigin: originCheck(ctx.config.checkOrigin),
    logger: logger.child({ component: 'realtime' }),
    logLimit: clientLogLimit(ctx.config),
    upgradeTimeoutMs: ctx.config.connections.upgradeTimeoutMs,
    maxTotalBufferedBytes: ctx.config.connections.maxTotalBufferedBytes,
    ...(pubsub ? { pubsub } : {}),
    longpoll: { secret: longpollSecret, bus: longpollBus },
    connect: async (params, info) => {
      const token = typeof params.token === 'string' && params.token !== '' ? params.token : info.authToken;
      try {
        const { userId, expiresAt } = await auth.identify(token);
        // The socket is closed when its token expires (close 1008 "token expired"): clients reconnect with a fresh one.
        return {
          assigns: { userId, baseUrl: opts.baseUrlOf?.(info.headers) },
          id: `user_socket:${userId}`,
          expiresAt,
        };
      } catch (err) {
        if (err instanceof TokenError) {
          logger.info({ reason: err.reason, detail: err.message, transport: info.transport }, 'socket refused');
          return { error: true, status: 403 };
        }
        throw err;
      }
    },
  });
  const relay = new TaskEventRelay(
    tasks,
    (e) => {
      realtime.localBroadcast(`task:${e.task_id}`, e.event, e.payload);
      realtime.localBroadcast(`tasks:${e.user_id}`, e.event, { ...e.payload, cursor: feedCursor(e) });
    },
    logger,
    bus,
  );
  const channelLogger = logger.child({ component: 'task_channel' });
  realtime.channel('task:*', new TaskChannel(tasks, channelLogger, relay, opts.taskLimit));
  realtime.channel('tasks:*', new UserTasksChannel(tasks, channelLogger, relay));
  realtime.attach(opts.server);

  // Sockets are drained (close 1012, clients reconnect elsewhere) before the relay stops feeding them.
  ctx.closers.push('realtime', async () => {
    await realtime.drain({ batchSize: 500, intervalMs: 20 });
    await realtime.close();
    await relay.close();
  });
  await relay.start();
  return { realtime, relay };
}

/**
 * The key long-poll session tokens are signed with, shared by all processes: derived from
 * AUTH_SECRET, else (open mode) from LONGPOLL_SECRET. Never either secret itself: session tokens
 * (<node>.<sid>.<mac>) and pyre1 user tokens (pyre1.<claims>.<mac>) are made alike, and a user
 * token must never read as a session's. Open mode with a bus and no LONGPOLL_SECRET: a key of this
 * process's own, so its long-poll sessions are served here only (said once at start).
 */
function longpollKey(
  config: Pick<Config, 'authSecret' | 'longpollSecret'>,
  clustered: boolean,
  logger: Logger,
): Buffer | undefined {
  const secret = config.authSecret ?? config.longpollSecret;
  if (secret) return createHmac('sha256', secret).update('pyre long-poll session tokens').digest();
  if (!clustered) return undefined;
  logger.warn(
    'open mode with a cluster bus and no LONGPOLL_SECRET: long-poll sessions are served only by the process that made them; set LONGPOLL_SECRET (the same on every process)',
  );
  return randomBytes(32);
}

/** CHECK_ORIGIN: a list of allowed browser origins; unset means the gateway's own host (Phoenix's default). */
function originCheck(list: string[] | undefined): CheckOrigin {
  return list && list.length ? list : true;
}
