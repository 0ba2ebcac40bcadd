// Rendering: the chat list, the open conversation, presence, typing and the connection banner.
// User text only ever goes in through textContent.

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function initials(name) {
  return (name || '?').slice(0, 2).toUpperCase();
}

function hue(id) {
  let h = 0;
  for (const ch of id || '') h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

export function avatar(node, id, name) {
  node.textContent = initials(name);
  node.style.background = `hsl(${hue(id)} 55% 45%)`;
}

function time(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function lastSeen(p) {
  if (!p) return '';
  if (p.status === 'online') return 'online';
  if (p.status === 'away') return 'away';
  if (!p.lastSeen) return 'offline';
  const d = new Date(p.lastSeen);
  const mins = Math.round((Date.now() - d.getTime()) / 60000);
  if (mins < 1) return 'last seen just now';
  if (mins < 60) return `last seen ${mins} min ago`;
  return `last seen ${d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' })}`;
}

function preview(store, m) {
  if (!m) return '';
  const who = m.from === store.me.userId ? 'You: ' : '';
  if (m.media) return `${who}[${m.type}] ${m.text || m.media.name}`;
  return who + m.text;
}

export function renderChatList(store, onOpen) {
  const list = $('chat-list');
  const chats = [...store.chats.values()].sort((a, b) => (b.last?.timestamp || '').localeCompare(a.last?.timestamp || ''));
  list.replaceChildren(...chats.map((c) => {
    const peer = store.peer(c);
    const p = peer ? store.presence.get(peer) : null;
    const av = el('span', { class: 'avatar', 'aria-hidden': 'true' });
    avatar(av, c.id, store.title(c));
    const dot = peer ? el('span', { class: `dot ${p?.status || 'offline'}`, title: p?.status || 'offline' }) : null;
    const badge = c.unread > 0 ? el('span', { class: 'badge', text: String(c.unread), 'aria-label': `${c.unread} unread` }) : null;
    const item = el('li', { class: `chat-item${store.current === c.id ? ' active' : ''}`, 'data-chat-id': c.id },
      el('button', { type: 'button', onclick: () => onOpen(c.id) },
        el('span', { class: 'avatar-wrap' }, av, dot),
        el('span', { class: 'chat-text' },
          el('span', { class: 'chat-name', text: store.title(c) }),
          el('span', { class: 'chat-last muted', text: preview(store, c.last) })),
        badge));
    return item;
  }));
}

// Media elements are kept across renders (by node and media id), so an image or a playing
// video is not fetched again each time the conversation is drawn.
const mediaNodes = new Map();
const MEDIA_NODES_MAX = 200;

function mediaNode(api, m) {
  const key = `${m.type} ${api.base()} ${m.media.mediaId}`;
  let node = mediaNodes.get(key);
  if (!node) {
    node = newMediaNode(m);
    // The source is a signed URL (the session token never goes into a URL).
    api.mediaUrl(m.media.mediaId).then((url) => setMediaUrl(node, url), () => {});
    if (mediaNodes.size >= MEDIA_NODES_MAX) mediaNodes.delete(mediaNodes.keys().next().value);
    mediaNodes.set(key, node);
  }
  return node;
}

function setMediaUrl(node, url) {
  if (node.tagName === 'A') node.href = url;
  const inner = node.tagName === 'A' ? node.querySelector('img') : node;
  if (inner) inner.src = url;
}

function newMediaNode(m) {
  if (m.type === 'image') {
    const img = el('img', { alt: m.media.name, loading: 'lazy', class: 'media-image' });
    if (m.media.width && m.media.height) Object.assign(img, { width: Math.min(320, m.media.width) });
    return el('a', { target: '_blank', rel: 'noopener' }, img);
  }
  if (m.type === 'video') return el('video', { controls: true, preload: 'metadata', class: 'media-video' });
  const kb = Math.max(1, Math.round(m.media.size / 1024));
  return el('a', { download: m.media.name, class: 'media-file', text: `${m.media.name} (${kb} KiB)` });
}

const TICKS = { pending: '○', sent: '✓', delivered: '✓✓', read: '✓✓' };

function messageNode(store, c, m) {
  const mine = m.from === store.me.userId;
  const body = el('div', { class: 'bubble' });
  if (c.kind === 'group' && !mine) body.append(el('div', { class: 'sender', text: store.name(m.from) }));
  if (m.media && !m.pending) body.append(mediaNode(store.api, m));
  else if (m.media || m.uploading) body.append(el('div', { class: 'muted', text: `Uploading ${m.media?.name || ''}…` }));
  if (m.text) body.append(el('div', { class: 'text', text: m.text }));
  const meta = el('div', { class: 'meta' }, el('time', { text: time(m.timestamp), dateTime: m.timestamp || '' }));
  if (mine) {
    const st = store.status(c, m);
    meta.append(el('span', { class: `tick ${st}`, 'data-status': st, text: TICKS[st], title: st, 'aria-label': st }));
  }
  body.append(meta);
  return el('li', { class: `msg${mine ? ' mine' : ''}`, 'data-seq': m.seq ?? '', 'data-client-id': m.clientMsgId || '' }, body);
}

export function renderConversation(store, keepScroll) {
  const c = store.chats.get(store.current);
  $('empty-conversation').hidden = !!c;
  $('conv-header').hidden = !c;
  $('composer').hidden = !c;
  if (!c) {
    $('messages').replaceChildren();
    return;
  }
  $('conv-name').textContent = store.title(c);
  avatar($('conv-avatar'), c.id, store.title(c));
  $('members-toggle').hidden = c.kind !== 'group';
  renderPeer(store);
  const box = $('messages');
  const fromBottom = box.scrollHeight - box.scrollTop - box.clientHeight;
  const before = box.scrollHeight;
  const msgs = [...c.messages.values()].sort((a, b) => a.seq - b.seq);
  const items = msgs.map((m) => messageNode(store, c, m));
  for (const p of c.pending.values()) items.push(messageNode(store, c, p));
  if (c.hasMore) items.unshift(el('li', { class: 'more muted', text: 'Scroll up for older messages' }));
  box.replaceChildren(...items);
  if (keepScroll === 'older') box.scrollTop = box.scrollHeight - before + box.scrollTop;
  else if (keepScroll === 'bottom' || fromBottom < 80) box.scrollTop = box.scrollHeight;
  renderTyping(store);
}

export function renderPeer(store) {
  const c = store.chats.get(store.current);
  if (!c) return;
  const peer = store.peer(c);
  $('peer-status').textContent = peer ? lastSeen(store.presence.get(peer)) : `${c.members.length} members`;
}

export function renderTyping(store) {
  const c = store.chats.get(store.current);
  const names = c ? store.typers(c) : [];
  $('typing').textContent = names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
}

export function renderMembers(store, onRemove) {
  const c = store.chats.get(store.current);
  if (!c) return;
  const amAdmin = c.admins.includes(store.me.userId);
  const invited = (c.invited || []).map((u) => el('li', { class: 'invited' }, el('span', { text: `${store.name(u)} (invited)` })));
  $('member-list').replaceChildren(...c.members.map((u) => {
    const li = el('li', {}, el('span', { text: `${store.name(u)}${c.admins.includes(u) ? ' (admin)' : ''}` }));
    if (amAdmin && u !== store.me.userId) {
      li.append(el('button', { type: 'button', class: 'link', text: 'Remove', onclick: () => onRemove(u) }));
    } else if (u === store.me.userId) {
      li.append(el('button', { type: 'button', class: 'link', text: 'Leave', onclick: () => onRemove(u) }));
    }
    return li;
  }), ...invited);
  $('add-member-form').hidden = !amAdmin;
}

/// Pending group invites, each with Join and Decline.
export function renderInvites(store, onAnswer) {
  const items = [...store.invites.values()].map((i) => el('li', {},
    el('span', { text: `${i.name || 'A group'} (from ${store.name(i.from)})` }),
    el('button', { type: 'button', class: 'link join', text: 'Join', onclick: () => onAnswer(i.chatId, true) }),
    el('button', { type: 'button', class: 'link decline', text: 'Decline', onclick: () => onAnswer(i.chatId, false) })));
  $('invite-list').replaceChildren(...items);
  $('invites').hidden = items.length === 0;
}

export function renderBanner(state, node, reconnects) {
  const b = $('conn-banner');
  b.dataset.state = state;
  b.dataset.reconnects = String(reconnects);
  const text = {
    connecting: 'Connecting…',
    reconnecting: `Reconnecting… (trying ${node})`,
    unauthorized: 'Your session has ended; log in again.',
    online: '',
  }[state];
  b.textContent = text || '';
  b.hidden = state === 'online';
}
