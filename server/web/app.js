// The raftchat web client: login, then the chat list and one open conversation, live over one
// WebSocket per tab. The session (its access and refresh tokens) is kept in localStorage, so
// every tab of a user shares it; a tab that refreshes the tokens saves them for the others.

import { Api } from './api.js';
import { Socket } from './socket.js';
import { Store, normalize, uuid } from './chats.js';
import * as view from './view.js';

const $ = (id) => document.getElementById(id);
const api = new Api();
let store = null;
let socket = null;
const acks = { delivered: new Map(), read: new Map() };
let ackTimer = null;
let lastTypingSent = 0;

function showError(id, e) {
  $(id).textContent = e ? e.message || String(e) : '';
}

function saveSession(s) {
  localStorage.setItem('raftchat.session', JSON.stringify(s));
}

function loadSession() {
  try {
    return JSON.parse(localStorage.getItem('raftchat.session') || 'null');
  } catch (_) {
    return null;
  }
}

function showLogin() {
  $('login-view').hidden = false;
  $('app-view').hidden = true;
  $('conn-banner').hidden = true;
  $('login-username').focus();
}

async function login(register) {
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  showError('login-error', null);
  try {
    if (register) await api.register(username, password);
    const s = await api.login(username, password);
    const session = {
      userId: s.userId,
      username,
      token: s.token,
      refreshToken: s.refreshToken,
      expiresAt: s.expiresAt,
    };
    saveSession(session);
    await start(session);
  } catch (e) {
    showError('login-error', e);
  }
}

/// Acknowledges delivered and read seqs in batches (at most one frame per chat every 300 ms).
function queueAck(kind, chatId, seq) {
  const m = acks[kind];
  if ((m.get(chatId) || 0) >= seq) return;
  m.set(chatId, seq);
  clearTimeout(ackTimer);
  ackTimer = setTimeout(() => {
    for (const k of ['delivered', 'read']) {
      for (const [chatId, seq] of acks[k]) socket.raw({ type: k, chatId, seq });
      acks[k].clear();
    }
  }, 300);
}

function canSeeConversation() {
  return document.visibilityState === 'visible';
}

function markRead() {
  const c = store?.chats.get(store.current);
  if (!c || !canSeeConversation() || c.lastSeq === 0) return;
  if (c.readSeq < c.lastSeq || c.unread > 0) {
    c.unread = 0;
    queueAck('read', c.id, c.lastSeq);
    view.renderChatList(store, openChat);
  }
}

async function onFrame(f) {
  switch (f.type) {
    case 'message': {
      const m = normalize(f.chatId, f);
      if (!store.chats.has(f.chatId)) await store.refreshChat(f.chatId).catch(() => null);
      await store.learnNames([m.from]);
      store.addMessage(m);
      if (m.from !== store.me.userId) queueAck('delivered', m.chatId, m.seq);
      if (store.current === m.chatId) {
        view.renderConversation(store);
        markRead();
      }
      view.renderChatList(store, openChat);
      break;
    }
    case 'ack':
      store.ack(f);
      if (store.current === f.chatId) view.renderConversation(store, 'bottom');
      view.renderChatList(store, openChat);
      break;
    case 'receipt':
      store.receipt(f);
      if (store.current === f.chatId) view.renderConversation(store);
      view.renderChatList(store, openChat);
      break;
    case 'presence':
      store.presence.set(f.userId, { status: f.status, lastSeen: f.lastSeen });
      view.renderPeer(store);
      view.renderChatList(store, openChat);
      break;
    case 'typing':
      store.typing(f);
      view.renderTyping(store);
      setTimeout(() => view.renderTyping(store), 3100);
      break;
    case 'chat':
      if (f.member) await store.refreshChat(f.chatId).catch(() => null);
      else {
        store.chats.delete(f.chatId);
        if (store.current === f.chatId) store.current = null;
        view.renderConversation(store);
      }
      view.renderChatList(store, openChat);
      break;
    case 'invite':
      await store.learnNames([f.from]);
      store.invites.set(f.chatId, f);
      view.renderInvites(store, answerInvite);
      break;
    case 'error':
      showError('sidebar-error', new Error(`${f.code}: ${f.message}`));
      break;
    default:
      break;
  }
}

/// Accepts (`yes`) or declines an invite from the sidebar.
async function answerInvite(chatId, yes) {
  try {
    if (yes) {
      store.chatOf(await api.join(chatId));
    } else {
      await api.decline(chatId);
    }
    store.invites.delete(chatId);
    view.renderInvites(store, answerInvite);
    view.renderChatList(store, openChat);
    if (yes) await openChat(chatId);
  } catch (err) {
    showError('sidebar-error', err);
  }
}

async function loadInvites() {
  const { invites } = await api.invites();
  await store.learnNames(invites.map((i) => i.from));
  store.invites = new Map(invites.map((i) => [i.chatId, i]));
  view.renderInvites(store, answerInvite);
}

async function openChat(chatId) {
  store.current = chatId;
  const c = store.chats.get(chatId);
  c.unread = 0;
  $('members-panel').hidden = true;
  view.renderChatList(store, openChat);
  view.renderConversation(store, 'bottom');
  if (!c.loaded) {
    await store.loadOlder(c).catch((e) => showError('sidebar-error', e));
    view.renderConversation(store, 'bottom');
  }
  const peer = store.peer(c);
  if (peer && !store.presence.has(peer)) {
    api.presence(peer).then((p) => {
      store.presence.set(peer, { status: p.status, lastSeen: p.lastSeen });
      view.renderPeer(store);
    }).catch(() => null);
  }
  markRead();
  $('composer-input').focus();
}

function send(text, media, type) {
  const c = store.chats.get(store.current);
  if (!c) return;
  const frame = { type: 'message', chatId: c.id, text, clientMsgId: uuid(), messageType: type };
  if (media) frame.media = media;
  store.addPending(c, frame);
  view.renderConversation(store, 'bottom');
  try {
    socket.sendMessage(frame);
  } catch (e) {
    showError('sidebar-error', e);
  }
}

function imageSize(file) {
  return new Promise((resolve) => {
    const img = new Image();
    const url = URL.createObjectURL(file);
    img.onload = () => { resolve({ width: img.naturalWidth, height: img.naturalHeight }); URL.revokeObjectURL(url); };
    img.onerror = () => { resolve({}); URL.revokeObjectURL(url); };
    img.src = url;
  });
}

const MIME_BY_EXTENSION = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  mp4: 'video/mp4', webm: 'video/webm', mov: 'video/quicktime', pdf: 'application/pdf', txt: 'text/plain',
};

/// The file's type, from its extension when the browser gives none.
function mimeOf(file) {
  if (file.type) return file.type;
  const ext = file.name.split('.').pop().toLowerCase();
  return MIME_BY_EXTENSION[ext] || 'application/octet-stream';
}

async function attach(picked) {
  const c = store.chats.get(store.current);
  if (!c || !picked) return;
  const file = picked.type ? picked : new File([picked], picked.name, { type: mimeOf(picked) });
  const type = file.type.startsWith('image/') ? 'image' : file.type.startsWith('video/') ? 'video' : 'file';
  const placeholder = uuid();
  c.pending.set(placeholder, { chatId: c.id, from: store.me.userId, type, text: '', uploading: true, pending: true,
    clientMsgId: placeholder, timestamp: new Date().toISOString(), media: { name: file.name } });
  view.renderConversation(store, 'bottom');
  try {
    const up = await api.upload(file);
    const media = { mediaId: up.mediaId, mime: up.mime, size: up.size, name: up.name };
    if (type === 'image') Object.assign(media, await imageSize(file));
    c.pending.delete(placeholder);
    send('', media, type);
  } catch (e) {
    c.pending.delete(placeholder);
    view.renderConversation(store);
    showError('sidebar-error', e);
  }
}

async function findUser(name) {
  const u = await api.userByName(name.trim());
  store.users.set(u.userId, u.username);
  return u.userId;
}

function wire() {
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('composer-input').value;
    if (!text.trim()) return;
    $('composer-input').value = '';
    send(text, null, 'text');
  });
  $('composer-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('composer-input').addEventListener('input', () => {
    if (store.current && Date.now() - lastTypingSent > 1000) {
      lastTypingSent = Date.now();
      socket.raw({ type: 'typing', chatId: store.current });
    }
  });
  $('attach-input').addEventListener('change', (e) => {
    attach(e.target.files[0]);
    e.target.value = '';
  });
  $('messages').addEventListener('scroll', async () => {
    const c = store.chats.get(store.current);
    if (!c || !c.hasMore || c.loadingOlder || $('messages').scrollTop > 60) return;
    c.loadingOlder = true;
    try {
      if (await store.loadOlder(c)) view.renderConversation(store, 'older');
    } finally {
      c.loadingOlder = false;
    }
  });
  $('new-chat-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showError('sidebar-error', null);
    try {
      const other = await findUser($('new-chat-username').value);
      const chat = await api.createDirect(other);
      store.chatOf(chat);
      $('new-chat-username').value = '';
      await openChat(chat.chatId);
    } catch (err) {
      showError('sidebar-error', err);
    }
  });
  $('new-group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showError('sidebar-error', null);
    try {
      const names = $('new-group-members').value.split(',').map((n) => n.trim()).filter(Boolean);
      const ids = await Promise.all(names.map(findUser));
      const chat = await api.createGroup($('new-group-name').value.trim(), ids);
      store.chatOf(chat);
      $('new-group-form').reset();
      await openChat(chat.chatId);
    } catch (err) {
      showError('sidebar-error', err);
    }
  });
  $('members-toggle').addEventListener('click', async () => {
    const panel = $('members-panel');
    panel.hidden = !panel.hidden;
    if (!panel.hidden) {
      await store.refreshChat(store.current).catch(() => null);
      view.renderMembers(store, removeMember);
    }
  });
  $('add-member-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api.addMember(store.current, await findUser($('add-member-username').value));
      $('add-member-username').value = '';
      await store.refreshChat(store.current);
      view.renderMembers(store, removeMember);
      view.renderPeer(store);
    } catch (err) {
      showError('sidebar-error', err);
    }
  });
  $('logout').addEventListener('click', async () => {
    // The server forgets the session too: a copied token stops working everywhere.
    await api.call('DELETE', '/sessions/current').catch(() => {});
    api.clearTokens();
    localStorage.removeItem('raftchat.session');
    location.reload();
  });
  document.addEventListener('visibilitychange', markRead);
  window.addEventListener('focus', markRead);
  window.addEventListener('storage', (e) => {
    if (e.key !== 'raftchat.session') return;
    if (!e.newValue) location.reload();
    // Another tab refreshed the tokens: use them (this tab's refresh token is spent).
    const s = loadSession();
    if (s?.userId === store?.me.userId && s?.refreshToken && s.refreshToken !== api.refreshToken) api.setTokens(s);
  });
}

async function removeMember(userId) {
  try {
    await api.removeMember(store.current, userId);
    if (userId === store.me.userId) {
      store.chats.delete(store.current);
      store.current = null;
      view.renderConversation(store);
    } else {
      await store.refreshChat(store.current);
      view.renderMembers(store, removeMember);
      view.renderPeer(store);
    }
    view.renderChatList(store, openChat);
  } catch (err) {
    showError('sidebar-error', err);
  }
}

async function start(session) {
  api.setTokens(session);
  api.onTokens = (t) => {
    Object.assign(session, { token: t.token, refreshToken: t.refreshToken, expiresAt: t.expiresAt });
    saveSession(session);
  };
  api.storedTokens = () => {
    const s = loadSession();
    return s?.userId === session.userId ? s : null;
  };
  api.onSessionEnded = () => {
    localStorage.removeItem('raftchat.session');
    location.reload();
  };
  store = new Store(api, session);
  try {
    await store.loadChats();
  } catch (e) {
    if (e.status === 401) {
      localStorage.removeItem('raftchat.session');
      showLogin();
      return;
    }
    throw e;
  }
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('me-name').textContent = session.username;
  view.avatar($('me-avatar'), session.userId, session.username);
  view.renderChatList(store, openChat);
  view.renderConversation(store);
  await loadInvites().catch((e) => showError('sidebar-error', e));
  socket = new Socket(api, {
    onFrame: (f) => onFrame(f).catch((e) => showError('sidebar-error', e)),
    onState: (state, node) => view.renderBanner(state, node, socket?.reconnects || 0),
    syncPoints: () => store.syncPoints(),
  });
  socket.start();
  wire();
}

async function main() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    login(false);
  });
  $('register-submit').addEventListener('click', () => {
    if ($('login-form').reportValidity()) login(true);
  });
  await api.discover();
  const session = loadSession();
  if (session?.token) await start(session).catch(() => showLogin());
  else showLogin();
}

main();
