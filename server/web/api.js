// REST calls to the cluster. Every node serves the API; when the node in use stops answering,
// calls move on to the next one (the list comes from GET /api/v1/nodes).

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
    this.onNodeChange = () => {};
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

  async call(method, path, body) {
    let lastError = null;
    for (let attempt = 0; attempt < this.nodes.length; attempt++) {
      let r;
      try {
        const headers = {};
        if (this.token) headers.Authorization = `Bearer ${this.token}`;
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
