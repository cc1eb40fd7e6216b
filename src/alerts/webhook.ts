// The alert endpoint of `strata archive serve --alerts-listen HOST:PORT`:
// plain HTTP/1.1, `POST /alerts`, Prometheus Alertmanager's webhook JSON as
// Alertmanager sends it (webhook_config with `url: http://HOST:PORT/alerts`
// and `http_config.authorization.credentials_file` = the archive's token).
//
// Answers: 200 {"received":N,"decisions":[...]} (a decision per alert:
// snapshot, suppressed, no-match, resolved, ...); 400 malformed body (the
// message names the field), 401 missing or wrong token, 404 another path,
// 405 another method, 413 body over 1 MiB, 415 not JSON, 503 the archive
// could not decide (Alertmanager retries 5xx, not 4xx). Nothing in a request
// can stop the server: every handler is wrapped, bodies are bounded while
// they stream in, slow clients are cut off (headers 10 s, request 30 s).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http2';
import type { AlertDecision, IncomingAlert } from '../protocol/snapshot-api.js';
import { parseWebhook, PayloadError, WEBHOOK_LIMITS } from './alertmanager.js';

/** The bearer check the listener applies (the archive server's TokenCheck fits it; alerts never import the archive). */
export interface BearerCheck {
  /** Null when the request carries the token; otherwise why not (never containing the token). */
  reject(headers: IncomingHttpHeaders): string | null;
}

export interface WebhookLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AlertListenerOptions {
  auth: BearerCheck;
  log: WebhookLog;
  /** Evaluates a webhook's alerts (the snapshot engine). */
  receive(alerts: IncomingAlert[]): Promise<AlertDecision[]>;
}

class HttpFailure extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export class AlertListener {
  private readonly server: http.Server;

  constructor(private readonly opts: AlertListenerOptions) {
    this.server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, maxHeaderSize: 16 * 1024 }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => this.answerError(req, res, err));
    });
    this.server.keepAliveTimeout = 5_000;
    this.server.on('clientError', (err: Error, socket) => {
      this.opts.log.warn({ err: err.message }, 'alert endpoint: malformed HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    this.server.on('error', (err: Error) => this.opts.log.error({ err: err.message }, 'alert endpoint error'));
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/alerts') throw new HttpFailure(404, 'no such path (POST /alerts takes Alertmanager webhooks)');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      throw new HttpFailure(405, 'method not allowed (POST /alerts)');
    }
    const why = this.opts.auth.reject(req.headers as IncomingHttpHeaders);
    if (why !== null) {
      this.opts.log.warn({ remote: req.socket.remoteAddress, reason: why }, 'alert endpoint: authentication failed');
      throw new HttpFailure(401, 'missing or wrong token (authorization: Bearer <token>)');
    }
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/json\b/i.test(type)) throw new HttpFailure(415, `content-type ${type.slice(0, 60)}: expected application/json`);
    const body = await readBody(req, WEBHOOK_LIMITS.maxBodyBytes);
    let alerts: IncomingAlert[];
    try {
      alerts = parseWebhook(body);
    } catch (err) {
      if (err instanceof PayloadError) throw new HttpFailure(400, err.message);
      throw err;
    }
    let decisions: AlertDecision[];
    try {
      decisions = await this.opts.receive(alerts);
    } catch (err) {
      throw new HttpFailure(503, `the archive could not evaluate the alerts: ${(err as Error).message}`);
    }
    send(res, 200, { received: alerts.length, decisions });
  }

  private answerError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const status = err instanceof HttpFailure ? err.status : 500;
    const message = err instanceof Error ? err.message : String(err);
    if (status >= 500) this.opts.log.error({ path: req.url?.slice(0, 200), status, err: message }, 'alert endpoint: request failed');
    else if (status !== 401) this.opts.log.warn({ remote: req.socket.remoteAddress, path: req.url?.slice(0, 200), status, err: message }, 'alert endpoint: request refused');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A body we did not read is not read now: the connection closes after the answer.
    const unread = !req.complete;
    if (unread) {
      res.setHeader('connection', 'close');
      res.once('finish', () => req.socket.end());
    }
    send(res, status, { error: message });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
  res.end(data);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new HttpFailure(413, `body of ${declared} bytes exceeds ${limit}`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      n += c.length;
      if (n > limit) {
        failed = true;
        reject(new HttpFailure(413, `body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => { if (!failed) resolve(Buffer.concat(chunks, n)); });
    req.once('error', (err) => { if (!failed) { failed = true; reject(new HttpFailure(400, `request aborted: ${err.message}`)); } });
    req.once('aborted', () => { if (!failed) { failed = true; reject(new HttpFailure(400, 'request aborted')); } });
  });
}
