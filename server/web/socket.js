// The WebSocket: one per tab. Reconnects with backoff, moving to another node when its own is
// gone; on every (re)connect the server replays what this user has not acknowledged, and the
// client asks again (`sync`) from the newest seq it holds of each open chat, so nothing is
// missed. Messages sent while disconnected wait in `pending` and go out again, under the same
// clientMsgId (the server keeps one copy), until their ack arrives.

const PING_EVERY_MS = 20000;
const BACKOFF_MAX_MS = 5000;
const PENDING_MAX = 200;

export class Socket {
  constructor(api, { onFrame, onState, syncPoints }) {
    this.api = api;
    this.onFrame = onFrame;
    this.onState = onState;
    this.syncPoints = syncPoints;
    this.ws = null;
    this.pending = new Map();
    this.failures = 0;
    this.closed = false;
    this.timer = null;
  }

  start() {
    this.closed = false;
    this.connect();
  }

  stop() {
    this.closed = true;
    clearInterval(this.timer);
    if (this.ws) this.ws.close();
  }

  connect() {
    if (this.closed) return;
    // The server checks the access token at the upgrade: one about to expire is refreshed first.
    this.api.ensureFresh().then(() => this.open());
  }

  open() {
    if (this.closed) return;
    // The token rides in the subprotocol header, not in the URL (which ends up in logs).
    const url = `${this.api.base().replace(/^http/, 'ws')}/ws`;
    this.onState(this.failures === 0 ? 'connecting' : 'reconnecting', this.api.base());
    let opened = false;
    const ws = new WebSocket(url, ['raftchat', `bearer.${this.api.token}`]);
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      this.failures = 0;
      this.onState('online', this.api.base());
      const chats = this.syncPoints();
      if (Object.keys(chats).length > 0) ws.send(JSON.stringify({ type: 'sync', chats }));
      for (const frame of this.pending.values()) ws.send(JSON.stringify(frame));
      clearInterval(this.timer);
      this.timer = setInterval(() => this.raw({ type: 'ping' }), PING_EVERY_MS);
    };
    ws.onmessage = (e) => {
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (frame.type === 'ack') this.pending.delete(frame.clientMsgId);
      if (frame.type === 'error' && frame.ref && this.pending.has(frame.ref)) this.pending.delete(frame.ref);
      this.onFrame(frame);
    };
    ws.onclose = (e) => {
      clearInterval(this.timer);
      if (this.ws !== ws || this.closed) return;
      if (e.code === 4001 || e.code === 1008) {
        this.onState('unauthorized', this.api.base());
        return;
      }
      this.failures += 1;
      this.reconnects = (this.reconnects || 0) + 1;
      // A node that never let us in, or dropped us twice in a row, is left for the next one.
      if (!opened || this.failures > 1) this.api.failover();
      this.onState('reconnecting', this.api.base());
      const backoff = Math.min(BACKOFF_MAX_MS, 250 * 2 ** Math.min(this.failures, 5));
      setTimeout(() => this.connect(), backoff * (0.5 + Math.random() / 2));
    };
  }

  isOpen() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  raw(frame) {
    if (this.isOpen()) this.ws.send(JSON.stringify(frame));
  }

  /// Sends a message frame; kept until acknowledged, resent after a reconnect.
  sendMessage(frame) {
    if (this.pending.size >= PENDING_MAX) throw new Error('too many unsent messages');
    this.pending.set(frame.clientMsgId, frame);
    this.raw(frame);
  }
}
