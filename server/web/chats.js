// What the client knows: chats, their messages, names, presence and receipts. No DOM here; the
// view renders from it after every change.

const HISTORY_PAGE = 50;
const LIST_PREVIEWS = 50;
const TYPING_SHOWN_MS = 3000;

export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/// A message from a history page or a live frame, in one shape.
export function normalize(chatId, m) {
  return {
    chatId,
    seq: m.seq,
    messageId: m.messageId,
    from: m.from,
    type: m.messageType || m.type || 'text',
    text: m.message ?? m.text ?? '',
    media: m.media || null,
    clientMsgId: m.clientMsgId,
    timestamp: m.timestamp,
    status: m.status || null,
    pending: false,
  };
}

export class Store {
  constructor(api, me) {
    this.api = api;
    this.me = me;
    this.chats = new Map();
    this.users = new Map([[me.userId, me.username]]);
    this.presence = new Map();
    /// Pending group invites by chat id (the `invite` frame and `GET /invites`).
    this.invites = new Map();
    this.current = null;
    this.onChange = () => {};
  }

  changed(what) {
    this.onChange(what);
  }

  chatOf(raw) {
    let c = this.chats.get(raw.chatId);
    if (!c) {
      c = {
        id: raw.chatId, messages: new Map(), pending: new Map(), oldest: null, hasMore: true, loaded: false,
        last: null, floors: { delivered: 0, read: 0 }, marks: new Map(), typing: new Map(), unread: 0,
      };
      this.chats.set(raw.chatId, c);
    }
    Object.assign(c, {
      kind: raw.type, name: raw.name, members: raw.members || [], admins: raw.admins || [],
      invited: raw.invited || c.invited || [],
      lastSeq: Math.max(c.lastSeq || 0, raw.lastSeq || 0), readSeq: Math.max(c.readSeq || 0, raw.readSeq || 0),
    });
    if (raw.unread !== undefined) c.unread = this.current === c.id ? 0 : raw.unread;
    return c;
  }

  peer(c) {
    return c.kind === 'direct' ? c.members.find((m) => m !== this.me.userId) : null;
  }

  name(userId) {
    return this.users.get(userId) || userId.slice(0, 8);
  }

  title(c) {
    return c.kind === 'direct' ? this.name(this.peer(c) || this.me.userId) : c.name || 'Group';
  }

  async learnNames(ids) {
    const unknown = [...new Set(ids)].filter((id) => id && !this.users.has(id));
    await Promise.all(unknown.map(async (id) => {
      try {
        this.users.set(id, (await this.api.userById(id)).username);
      } catch (_) {
        // Shown by id until it can be looked up.
      }
    }));
  }

  async loadChats() {
    const v = await this.api.chats();
    for (const raw of v.chats || []) this.chatOf(raw);
    await this.learnNames([...this.chats.values()].map((c) => this.peer(c)));
    this.changed('list');
    const recent = [...this.chats.values()].filter((c) => c.lastSeq > 0 && !c.last).slice(0, LIST_PREVIEWS);
    await Promise.all(recent.map(async (c) => {
      try {
        const page = await this.api.history(c.id, c.lastSeq + 1, 1);
        if (page.messages?.[0] && !c.last) c.last = normalize(c.id, page.messages[0]);
      } catch (_) {
        // The preview stays empty.
      }
    }));
    this.changed('list');
  }

  async refreshChat(chatId) {
    const raw = await this.api.chat(chatId);
    const c = this.chatOf(raw);
    await this.learnNames([...c.members, ...c.invited]);
    this.changed('list');
    return c;
  }

  /// One more page of older messages of a chat (newest first from the server).
  async loadOlder(c) {
    if (!c.hasMore) return 0;
    const before = c.oldest ?? Number.MAX_SAFE_INTEGER;
    const page = await this.api.history(c.id, before, HISTORY_PAGE);
    const msgs = (page.messages || []).map((m) => normalize(c.id, m));
    for (const m of msgs) {
      c.messages.set(m.seq, m);
      if (m.from === this.me.userId && m.status === 'read') c.floors.read = Math.max(c.floors.read, m.seq);
      if (m.from === this.me.userId && (m.status === 'read' || m.status === 'delivered')) {
        c.floors.delivered = Math.max(c.floors.delivered, m.seq);
      }
    }
    if (msgs.length > 0) c.oldest = Math.min(...msgs.map((m) => m.seq));
    c.hasMore = !!page.hasMore;
    c.lastSeq = Math.max(c.lastSeq, page.lastSeq || 0);
    c.loaded = true;
    await this.learnNames(msgs.map((m) => m.from));
    return msgs.length;
  }

  addPending(c, frame) {
    c.pending.set(frame.clientMsgId, {
      chatId: c.id, seq: null, from: this.me.userId, type: frame.messageType, text: frame.text,
      media: frame.media || null, clientMsgId: frame.clientMsgId, timestamp: new Date().toISOString(), pending: true,
    });
    this.changed('messages');
  }

  /// A committed message (live frame, ack, or replay after a reconnect); repeats are ignored.
  addMessage(m) {
    const c = this.chats.get(m.chatId);
    if (!c) return false;
    c.pending.delete(m.clientMsgId);
    // Replays after a reconnect repeat seqs the chat already counted.
    const fresh = m.seq > c.lastSeq && !c.messages.has(m.seq);
    if (c.loaded || this.current === c.id) c.messages.set(m.seq, m);
    if (!c.last || m.seq >= c.last.seq) c.last = m;
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    if (fresh && m.from !== this.me.userId && m.seq > c.readSeq && this.current !== c.id) c.unread += 1;
    if (m.from !== this.me.userId) c.typing.delete(m.from);
    return fresh;
  }

  ack(frame) {
    const c = this.chats.get(frame.chatId);
    const p = c?.pending.get(frame.clientMsgId);
    if (!c || !p) return;
    this.addMessage({ ...p, seq: frame.seq, messageId: frame.messageId, timestamp: frame.timestamp, pending: false });
  }

  receipt(f) {
    const c = this.chats.get(f.chatId);
    if (!c) return;
    if (f.userId === this.me.userId) {
      c.readSeq = Math.max(c.readSeq, f.read);
      if (c.readSeq >= c.lastSeq) c.unread = 0;
      return;
    }
    const old = c.marks.get(f.userId) || { delivered: 0, read: 0 };
    c.marks.set(f.userId, { delivered: Math.max(old.delivered, f.delivered), read: Math.max(old.read, f.read) });
    const others = c.members.filter((u) => u !== this.me.userId);
    const low = (k) => Math.min(...others.map((u) => c.marks.get(u)?.[k] ?? c.floors[k]));
    if (others.length > 0) c.floors = { delivered: Math.max(c.floors.delivered, low('delivered')), read: Math.max(c.floors.read, low('read')) };
  }

  /// pending, sent, delivered or read, for the user's own messages.
  status(c, m) {
    if (m.pending) return 'pending';
    if (m.seq <= c.floors.read) return 'read';
    if (m.seq <= c.floors.delivered) return 'delivered';
    return 'sent';
  }

  typing(f) {
    const c = this.chats.get(f.chatId);
    if (!c || f.userId === this.me.userId) return;
    c.typing.set(f.userId, Date.now() + TYPING_SHOWN_MS);
  }

  typers(c) {
    const now = Date.now();
    return [...c.typing].filter(([, until]) => until > now).map(([u]) => this.name(u));
  }

  /// The newest seq held of every chat with loaded messages: where a resumed socket continues.
  syncPoints() {
    const out = {};
    for (const c of this.chats.values()) if (c.loaded) out[c.id] = c.lastSeq;
    return out;
  }
}
