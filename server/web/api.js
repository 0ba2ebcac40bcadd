// REST calls to the cluster. Every node serves the API; when the node in use stops answering,
// calls move on to the next one (the list comes from GET /api/v1/nodes).
//
// The access token lives an hour (by default): it is refreshed shortly before it expires, and
// once more on a 401, with the session's refresh token, which rotates on every refresh. A
// rotated refresh token used again revokes the session, so refreshes never overlap: one at a
// time per tab, and across the tabs sharing the session (Web Locks), a tab first adopting the
// tokens another tab saved.

/// A token is refreshed this long before it expires at most (a quarter of its life if shorter).
const REFRESH_EARLY_MS = 2 * 60 * 1000;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor() {
    this.nodes = [location.origin];
    this.current = 0;
    this.token = null;
    this.refreshToken = null;
    this.refreshAt = 0;
    this.refreshTimer = null;
    this.refreshing = null;
    this.onNodeChange = () => {};
    /// Called with every new set of tokens (to save them).
    this.onTokens = () => {};
    /// The tokens saved by this or another tab, if any.
    this.storedTokens = () => null;
    /// Called when the session is over (a refresh refused): sign in again.
    this.onSessionEnded = () => {};
  }

  /// Adopts a session's tokens (`{token, refreshToken, expiresAt}`, as a login or a refresh
  /// answers them) and schedules the next refresh.
  setTokens(t) {
    this.token = t?.token || null;
    this.refreshToken = t?.refreshToken || null;
    const expires = t?.expiresAt ? Date.parse(t.expiresAt) : NaN;
    clearTimeout(this.refreshTimer);
    this.refreshAt = 0;
    if (this.refreshToken && !Number.isNaN(expires)) {
      this.refreshAt = expires - Math.min(REFRESH_EARLY_MS, (expires - Date.now()) / 4);
      // A refresh that fails for want of a node is tried again; a refused one ends the session.
      const tick = () =>
        this.refresh().catch((e) => {
          if (this.refreshToken && !(e instanceof ApiError && e.status === 401)) {
            this.refreshTimer = setTimeout(tick, 30 * 1000);
          }
        });
      // (setTimeout fires at once past 2^31 ms: a token living longer is refreshed early.)
      this.refreshTimer = setTimeout(tick, Math.min(2 ** 31 - 1, Math.max(1000, this.refreshAt - Date.now())));
    }
  }

  /// Forgets both tokens (logout).
  clearTokens() {
    this.setTokens(null);
  }

  /// Refreshes first when the access token is about to expire (or has: a laptop that slept).
  async ensureFresh() {
    if (this.refreshToken && this.refreshAt && Date.now() >= this.refreshAt) {
      await this.refresh().catch(() => {});
    }
  }

  /// New tokens for this session; concurrent callers share one refresh.
  refresh() {
    if (!this.refreshing) {
      const run = () => this.refreshNow();
      const p = navigator.locks ? navigator.locks.request('raftchat-refresh', run) : run();
      this.refreshing = p.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshNow() {
    // Another tab may have refreshed already: its tokens are newer, and ours is spent.
    const stored = this.storedTokens();
    if (stored?.refreshToken && stored.refreshToken !== this.refreshToken) {
      this.setTokens(stored);
      return;
    }
    if (!this.refreshToken) throw new ApiError(401, 'no_token', 'no refresh token');
    let v;
    try {
      v = await this.send('POST', '/sessions/refresh', { refreshToken: this.refreshToken }, false);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.clearTokens();
        this.onSessionEnded(e);
      }
      throw e;
    }
    this.setTokens(v);
    this.onTokens(v);
  }

  base() {
    return this.nodes[this.current];
  }

  /// Learns every node's address; the page's own node stays first.
  async discover() {
    try {
      const r = await fetch(`${this.base()}/api/v1/nodes`);
      const v = await r.json();
      for (const url of v.nodes || []) {
        if (!this.nodes.includes(url)) this.nodes.push(url);
      }
    } catch (_) {
      // One node is enough to start; discovery is tried again on the next failover.
    }
  }

  failover() {
    this.current = (this.current + 1) % this.nodes.length;
    this.onNodeChange(this.base());
  }

  /// A REST call with the session's token; an access token refused (expired while the page
  /// slept, say) is refreshed and the call made once more (a 401 means nothing was done).
  async call(method, path, body) {
    await this.ensureFresh();
    try {
      return await this.send(method, path, body, true);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !this.refreshToken || e.code === 'revoked') throw e;
      const before = this.token;
      await this.refresh();
      if (this.token === before) throw e;
      return this.send(method, path, body, true);
    }
  }

  async send(method, path, body, auth) {
    let lastError = null;
    for (let attempt = 0; attempt < this.nodes.length; attempt++) {
      let r;
      try {
        const headers = {};
        if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        r = await fetch(`${this.base()}/api/v1${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        lastError = e;
        this.failover();
        continue;
      }
      const v = await r.json().catch(() => ({}));
      if (!r.ok) {
        if (r.status === 503 && attempt + 1 < this.nodes.length) {
          lastError = new ApiError(r.status, v.error?.code, v.error?.message);
          this.failover();
          continue;
        }
        throw new ApiError(r.status, v.error?.code, v.error?.message);
      }
      return v;
    }
    throw lastError || new ApiError(0, 'unreachable', 'no node answers');
  }

  register(username, password) {
    return this.call('POST', '/users', { username, password });
  }

  login(username, password) {
    return this.call('POST', '/sessions', { username, password });
  }

  userByName(name) {
    return this.call('GET', `/users/${encodeURIComponent(name)}`);
  }

  userById(id) {
    return this.call('GET', `/users/id/${id}`);
  }

  chats() {
    return this.call('GET', '/chats');
  }

  chat(id) {
    return this.call('GET', `/chats/${id}`);
  }

  createDirect(userId) {
    return this.call('POST', '/chats', { type: 'direct', members: [userId] });
  }

  createGroup(name, members) {
    return this.call('POST', '/chats', { type: 'group', name, members });
  }

  addMember(chatId, userId) {
    return this.call('POST', `/chats/${chatId}/members`, { userId });
  }

  invites() {
    return this.call('GET', '/invites');
  }

  join(chatId) {
    return this.call('POST', `/chats/${chatId}/join`);
  }

  decline(chatId) {
    return this.call('DELETE', `/invites/${chatId}`);
  }

  removeMember(chatId, userId) {
    return this.call('DELETE', `/chats/${chatId}/members/${userId}`);
  }

  /// Newest first, below `before` (exclusive).
  history(chatId, before, limit = 50) {
    return this.call('GET', `/messages/${chatId}?before=${before}&limit=${limit}`);
  }

  presence(userId) {
    return this.call('GET', `/presence/${userId}`);
  }

  async upload(file) {
    await this.ensureFresh();
    let lastError = null;
    for (let attempt = 0; attempt < this.nodes.length; attempt++) {
      try {
        const r = await fetch(`${this.base()}/api/v1/media?name=${encodeURIComponent(file.name)}`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': file.type || 'application/octet-stream' },
          body: file,
        });
        const v = await r.json().catch(() => ({}));
        if (!r.ok) throw new ApiError(r.status, v.error?.code, v.error?.message);
        return v;
      } catch (e) {
        if (e instanceof ApiError) throw e;
        lastError = e;
        this.failover();
      }
    }
    throw lastError;
  }

  /// A signed URL for an <img> or <video> (they cannot send the token header); kept until
  /// shortly before it expires.
  async mediaUrl(mediaId) {
    this.links = this.links || new Map();
    const cached = this.links.get(mediaId);
    if (cached && cached.expiresAt - Date.now() > 5 * 60 * 1000) return cached.url;
    const v = await this.call('POST', `/media/${encodeURIComponent(mediaId)}/link`);
    const link = { url: `${this.base()}${v.url}`, expiresAt: v.expiresAt };
    if (this.links.size > 500) this.links.clear();
    this.links.set(mediaId, link);
    return link.url;
  }
}
