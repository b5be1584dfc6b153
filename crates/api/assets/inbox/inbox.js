// The Omnibox web inbox: one page, no framework, no build step.
//
// It talks to the server it was loaded from and nothing else: GraphQL over
// POST /graphql for queries and mutations, and graphql-transport-ws over a
// WebSocket at /graphql for live updates. Every piece of customer data is put
// into the page with textContent or setAttribute, never parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'omnibox.token';
  const LIST_PAGE = 30;
  const THREAD_PAGE = 50;
  const HOUR = 3600 * 1000;

  // --- GraphQL documents --------------------------------------------------

  const ROW = `fragment Row on Conversation {
    id position channelKind
    channel { id name kind status }
    contact { id displayName platformUserId }
    lastMessageAt lastMessagePreview lastCustomerMessageAt unreadCount
    assignee { id email }
    status
    window { phase standardEndsAt humanAgentEndsAt }
  }`;
  const MSG = `fragment Msg on Message {
    id conversationId direction sentAt text unsent
    attachments { kind fileName sizeBytes contentType url title latitude longitude }
    deliveryState failureReason
    author { id email }
  }`;
  const MEMBER = 'id email role available';
  const CHANNEL = 'id kind name status';

  const Q = {
    me: `query Me { me { ${MEMBER} } }`,
    channels: `query Channels { channels { ${CHANNEL} } }`,
    members: `query Members { members { ${MEMBER} } }`,
    templates: `query Templates {
      replyTemplates { id kind name bubbles { text attachment { url fileName sizeBytes } } }
    }`,
    conversations: `query Conversations($channelIds: [UUID!], $assigneeId: UUID, $unassigned: Boolean,
        $status: ConversationStatus, $first: Int, $after: String) {
      conversations(channelIds: $channelIds, assigneeId: $assigneeId, unassigned: $unassigned,
          status: $status, first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { ...Row }
      }
    } ${ROW}`,
    thread: `query Thread($id: UUID!, $last: Int, $before: String) {
      conversation(id: $id) {
        ...Row
        messages(last: $last, before: $before) {
          pageInfo { hasPreviousPage startCursor }
          nodes { ...Msg }
        }
      }
    } ${ROW} ${MSG}`,
    sendReply: `mutation SendReply($input: SendReplyInput!) { sendReply(input: $input) { ...Msg } } ${MSG}`,
    assign: `mutation Assign($id: UUID!, $agentId: UUID!) {
      assignConversation(conversationId: $id, agentId: $agentId) { ...Row } } ${ROW}`,
    unassign: `mutation Unassign($id: UUID!) { unassignConversation(conversationId: $id) { ...Row } } ${ROW}`,
    resolve: `mutation Resolve($id: UUID!) { resolveConversation(conversationId: $id) { ...Row } } ${ROW}`,
    reopen: `mutation Reopen($id: UUID!) { reopenConversation(conversationId: $id) { ...Row } } ${ROW}`,
    markRead: `mutation MarkRead($id: UUID!) { markRead(conversationId: $id) { ...Row } } ${ROW}`,
    setAvailability: `mutation SetAvailability($available: Boolean!) {
      setAvailability(available: $available) { ${MEMBER} } }`,
    inboxUpdates: `subscription InboxUpdates($after: String) { inboxUpdates(after: $after) { ...Row } } ${ROW}`,
    conversationUpdates: `subscription ConversationUpdates($id: UUID!) {
      conversationUpdates(conversationId: $id) { ...Msg } } ${MSG}`,
    channelUpdates: `subscription ChannelUpdates { channelUpdates { ${CHANNEL} } }`,
    memberUpdates: `subscription MemberUpdates { memberUpdates { ${MEMBER} } }`,
  };

  // What each error code means for the person at the keyboard. The server's
  // own message follows: it says which rule applied and until when.
  const ERROR_WORDS = {
    WINDOW_CLOSED: 'Facebook no longer allows a reply here: the customer last wrote more than 7 days ago. A reply becomes possible when they write again.',
    PROMOTIONAL_NOT_ALLOWED: 'Promotional content (deals, offers, coupons) may only be sent within 24 hours of the customer\'s last message.',
    ATTACHMENT_NOT_ALLOWED: 'This attachment cannot be sent on this channel (its type or size is not allowed).',
    VALIDATION: 'The reply was not accepted as written.',
    CHANNEL_NOT_CONNECTED: 'The channel is not connected (its connection expired or it was disconnected): replies wait until an owner reconnects it.',
    NOT_SUPPORTED_ON_CHANNEL: 'This channel does not support that.',
    PLATFORM_UNAVAILABLE: 'The messaging platform could not be reached. Try again in a moment.',
    FORBIDDEN: 'Your role does not allow this.',
    NOT_FOUND: 'This conversation no longer exists or is not visible to you.',
    CONFLICT: 'Someone else changed this at the same moment. Try again.',
    UNAUTHENTICATED: 'Your session ended: sign in again.',
    QUERY_TOO_COSTLY: 'The server refused the request as too large.',
    BAD_REQUEST: 'The server did not understand the request.',
    NETWORK: 'The server could not be reached. Check the connection and try again.',
  };

  const ROLE_LABELS = { OWNER: 'Owner', PRIMARY_ADMIN: 'Primary admin', ADMIN: 'Admin', AGENT: 'Agent' };
  const KIND_LABELS = { LINE: 'LINE', FACEBOOK: 'Messenger' };
  const DELIVERY_LABELS = { QUEUED: 'Sending…', DELIVERED: 'Delivered', FAILED: 'Not delivered' };
  const DELIVERY_RANK = { QUEUED: 0, DELIVERED: 1, FAILED: 1 };

  // --- State ---------------------------------------------------------------

  const state = {
    token: null,
    signedIn: false,
    me: null,
    channels: new Map(),
    members: new Map(),
    templates: [],
    filter: { channelId: '', status: '', assignee: '' },
    rows: new Map(), // conversation id -> { conv, li, button, parts }
    pageInfo: null,
    listSeq: 0,
    liveTouched: null, // ids updated live while a list load is in flight
    selectedId: null,
    thread: null, // { id, conv, messages: Map(id -> { msg, li }), startCursor, hasPrevious, unsubscribe }
    live: null,
    lastPosition: null,
    media: new Map(), // media path -> Promise<{ url, type }> of a blob
    pendingSend: null, // { signature, key } of a reply whose outcome is unknown
    drafts: new Map(), // conversation id -> unsent reply text
    markReadTimer: null,
    tick: null,
  };

  const $ = (id) => document.getElementById(id);

  // --- Small DOM helpers (text only, never HTML) ----------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value == null || value === false) continue;
        if (name === 'class') el.className = value;
        else if (name === 'text') el.textContent = value;
        else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
        else el.setAttribute(name, value === true ? '' : String(value));
      }
    }
    for (const child of children) {
      if (child != null && child !== false) el.append(child);
    }
    return el;
  }

  function setText(el, text) {
    const value = text == null ? '' : String(text);
    if (el.textContent !== value) el.textContent = value;
  }

  function setData(el, name, value) {
    if (value == null || value === '') {
      if (name in el.dataset) delete el.dataset[name];
    } else if (el.dataset[name] !== value) {
      el.dataset[name] = value;
    }
  }

  function announce(text) {
    const announcer = $('announcer');
    announcer.textContent = '';
    // A fresh text node after a tick makes screen readers read it again.
    setTimeout(() => { announcer.textContent = text; }, 50);
  }

  // --- Formatting ----------------------------------------------------------

  const fmtTime = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const fmtWeekday = new Intl.DateTimeFormat(undefined, { weekday: 'short' });
  const fmtDay = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function shortTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    const now = new Date();
    if (date.toDateString() === now.toDateString()) return fmtTime.format(date);
    if (now - date < 6 * 24 * HOUR && now > date) return fmtWeekday.format(date);
    return fmtDay.format(date);
  }

  function fullTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? '' : fmtFull.format(date);
  }

  function formatBytes(n) {
    if (n == null) return '';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
    return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  }

  function contactName(conv) {
    const name = conv.contact && conv.contact.displayName;
    if (name) return name;
    const id = (conv.contact && conv.contact.platformUserId) || '';
    return `${KIND_LABELS[conv.channelKind] || 'Customer'} customer ${id.slice(-6)}`.trim();
  }

  function memberLabel(member) {
    if (!member) return 'Unassigned';
    if (state.me && member.id === state.me.id) return 'You';
    return member.email;
  }

  // The Facebook window as the server decided it, moved along with the clock
  // so a page left open shows a window closing without reloading.
  function windowInfo(conv, now = Date.now()) {
    const w = conv.window || {};
    if (conv.channelKind !== 'FACEBOOK' || w.phase === 'UNLIMITED') {
      return { phase: w.phase || 'UNLIMITED', badge: '', hint: '' };
    }
    const standardEnds = w.standardEndsAt ? Date.parse(w.standardEndsAt) : NaN;
    const humanEnds = w.humanAgentEndsAt ? Date.parse(w.humanAgentEndsAt) : NaN;
    let phase = w.phase;
    if (phase === 'STANDARD' && !Number.isNaN(standardEnds) && now >= standardEnds) phase = 'HUMAN_AGENT';
    if (phase === 'HUMAN_AGENT' && !Number.isNaN(humanEnds) && now >= humanEnds) phase = 'CLOSED';
    if (phase === 'STANDARD') {
      const left = Number.isNaN(standardEnds) ? NaN : standardEnds - now;
      let remaining = '';
      if (left >= HOUR) remaining = `${Math.floor(left / HOUR)} h`;
      else if (left > 0) remaining = `${Math.max(1, Math.ceil(left / 60000))} min`;
      return {
        phase,
        badge: remaining ? `${remaining} left` : 'standard window',
        hint: `Facebook's standard window: any reply, promotional included${remaining ? `, for ${remaining} more` : ''}.`,
      };
    }
    if (phase === 'HUMAN_AGENT') {
      const until = Number.isNaN(humanEnds) ? '' : ` until ${fullTime(w.humanAgentEndsAt)}`;
      return {
        phase,
        badge: 'human agent only',
        hint: `Over 24 hours since the customer wrote: a person may reply${until}, nothing promotional.`,
      };
    }
    return {
      phase: 'CLOSED',
      badge: 'closed',
      hint: 'Over 7 days since the customer wrote: Facebook allows no reply until they write again.',
    };
  }

  // --- GraphQL over HTTP -----------------------------------------------------

  class GraphQLError extends Error {
    constructor(message, code, errors) {
      super(message);
      this.code = code;
      this.errors = errors || [];
    }
  }

  async function gql(query, variables) {
    let response;
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          Authorization: `Bearer ${state.token}`,
        },
        body: JSON.stringify({ query, variables: variables || {} }),
        credentials: 'omit',
      });
    } catch (_) {
      throw new GraphQLError('The server could not be reached.', 'NETWORK');
    }
    let body;
    try {
      body = await response.json();
    } catch (_) {
      throw new GraphQLError(`The server answered ${response.status} without a GraphQL response.`, 'NETWORK');
    }
    if (body.errors && body.errors.length) {
      const first = body.errors[0];
      const code = (first.extensions && first.extensions.code) || 'UNKNOWN';
      if (code === 'UNAUTHENTICATED' && state.signedIn) {
        signOut('Your session ended: the token is no longer accepted. Sign in again.');
      }
      throw new GraphQLError(first.message || 'The request failed.', code, body.errors);
    }
    return body.data;
  }

  function errorWords(error) {
    const words = ERROR_WORDS[error.code];
    const detail = error.code === 'NETWORK' ? '' : error.message;
    if (!words) return detail || 'Something went wrong.';
    return detail && detail !== words ? `${words} (${detail})` : words;
  }

  function showError(el, error) {
    if (!error) {
      setText(el, '');
      setData(el, 'code', null);
      return;
    }
    setText(el, typeof error === 'string' ? error : errorWords(error));
    setData(el, 'code', typeof error === 'string' ? 'CLIENT' : error.code);
  }

  // --- graphql-transport-ws --------------------------------------------------

  // A small client for the graphql-transport-ws protocol: one socket, many
  // subscriptions, re-subscribed after every reconnect (with back-off).
  class LiveClient {
    constructor({ url, token, onStatus, onForbidden, onReconnect }) {
      Object.assign(this, { url, token, onStatus, onForbidden, onReconnect });
      this.subs = new Map();
      this.nextId = 1;
      this.attempt = 0;
      this.everAcked = false;
      this.stopped = false;
      this.connect();
    }

    connect() {
      if (this.stopped) return;
      clearTimeout(this.retryTimer);
      this.onStatus('connecting');
      const ws = new WebSocket(this.url, 'graphql-transport-ws');
      this.ws = ws;
      this.acked = false;
      ws.onopen = () => {
        this.send({ type: 'connection_init', payload: { Authorization: `Bearer ${this.token}` } });
        this.initTimer = setTimeout(() => this.drop(), 10000);
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => this.closed(event.code);
      ws.onerror = () => {}; // a close event follows
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
    }

    receive(data) {
      let message;
      try { message = JSON.parse(data); } catch (_) { return; }
      const sub = message.id != null ? this.subs.get(message.id) : undefined;
      switch (message.type) {
        case 'connection_ack': {
          clearTimeout(this.initTimer);
          const again = this.everAcked;
          this.acked = true;
          this.everAcked = true;
          this.attempt = 0;
          this.onStatus('live');
          for (const [id, s] of this.subs) this.sendSubscribe(id, s);
          this.heartbeat();
          if (again) this.onReconnect();
          break;
        }
        case 'ping': this.send({ type: 'pong' }); break;
        case 'pong': this.awaitingPong = false; break;
        case 'next':
          if (!sub) break;
          if (message.payload && message.payload.data) sub.sink.next(message.payload.data);
          else if (message.payload && message.payload.errors && sub.sink.error) sub.sink.error(message.payload.errors);
          break;
        case 'error':
          if (sub) { this.subs.delete(message.id); if (sub.sink.error) sub.sink.error(message.payload); }
          break;
        case 'complete':
          if (sub) { this.subs.delete(message.id); if (sub.sink.complete) sub.sink.complete(); }
          break;
        default: break;
      }
    }

    // A ping every 25 s; no pong by the next one means the socket is dead.
    heartbeat() {
      clearInterval(this.pingTimer);
      this.awaitingPong = false;
      this.pingTimer = setInterval(() => {
        if (this.awaitingPong) { this.drop(); return; }
        this.awaitingPong = true;
        this.send({ type: 'ping' });
      }, 25000);
    }

    drop() {
      const ws = this.ws;
      if (!ws) return;
      ws.onclose = null;
      ws.onmessage = null;
      try { ws.close(); } catch (_) { /* already closing */ }
      this.closed(1006);
    }

    closed(code) {
      clearTimeout(this.initTimer);
      clearInterval(this.pingTimer);
      this.acked = false;
      this.ws = null;
      if (this.stopped) return;
      if (code === 4403) {
        this.stopped = true;
        this.onForbidden();
        return;
      }
      const delay = Math.min(30000, 1000 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt = Math.min(this.attempt + 1, 10);
      this.onStatus('reconnecting', delay);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    reconnectNow() {
      if (!this.stopped && !this.ws) { this.attempt = 0; this.connect(); }
    }

    // `payload` is a function so that a re-subscription asks for what the
    // page needs now (the inbox asks for rows after the last position seen).
    subscribe(payload, sink) {
      const id = String(this.nextId++);
      const sub = { payload, sink };
      this.subs.set(id, sub);
      if (this.acked) this.sendSubscribe(id, sub);
      return () => {
        if (this.subs.delete(id) && this.acked) this.send({ id, type: 'complete' });
      };
    }

    sendSubscribe(id, sub) {
      this.send({ id, type: 'subscribe', payload: sub.payload() });
    }

    close() {
      this.stopped = true;
      clearTimeout(this.retryTimer);
      clearTimeout(this.initTimer);
      clearInterval(this.pingTimer);
      if (this.ws) { this.ws.onclose = null; this.ws.close(1000); this.ws = null; }
      this.subs.clear();
    }
  }

  function liveStatus(status, delay) {
    const el = $('live-status');
    el.dataset.state = status;
    if (status === 'live') setText(el, 'Live');
    else if (status === 'connecting') setText(el, 'Connecting…');
    else if (status === 'reconnecting') setText(el, `Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
    else setText(el, '');
  }

  function startLive() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    state.live = new LiveClient({
      url: `${scheme}//${location.host}/graphql`,
      token: state.token,
      onStatus: liveStatus,
      onForbidden: () => signOut('The live connection refused your token. Sign in again.'),
      onReconnect: () => {
        // Rows come back through `after`; without a position, reload the list.
        if (!state.lastPosition) loadConversations();
        if (state.thread) reloadThread();
      },
    });
    subscribeInbox(state.live);
    state.live.subscribe(() => ({ query: Q.channelUpdates }), {
      next: (data) => upsertChannel(data.channelUpdates),
    });
    state.live.subscribe(() => ({ query: Q.memberUpdates }), {
      next: (data) => upsertMember(data.memberUpdates),
    });
  }

  // The inbox feed must never end silently: if the server refuses or ends
  // it (a position it no longer knows, say), start over from a fresh list.
  function subscribeInbox(live) {
    const restart = () => {
      setTimeout(() => {
        if (state.live !== live) return;
        state.lastPosition = null;
        subscribeInbox(live);
        loadConversations();
      }, 3000);
    };
    live.subscribe(
      () => ({ query: Q.inboxUpdates, variables: { after: state.lastPosition } }),
      { next: (data) => onInboxUpdate(data.inboxUpdates), error: restart, complete: restart },
    );
  }

  // --- Sign-in ---------------------------------------------------------------

  function tokenFromHash() {
    if (!location.hash || location.hash.length < 2) return null;
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get('token');
    if (token === null) return null;
    // The token must not stay in the address bar or the history.
    history.replaceState(null, '', location.pathname + location.search);
    return token.trim() || null;
  }

  function showSignIn(message) {
    $('app').hidden = true;
    $('account').hidden = true;
    $('signin').hidden = false;
    liveStatus('offline');
    showError($('signin-error'), message || null);
    $('signin-token').value = '';
    $('signin-token').focus();
  }

  async function signIn(token) {
    state.token = token;
    const button = $('signin-submit');
    button.disabled = true;
    let me;
    try {
      ({ me } = await gql(Q.me));
    } catch (error) {
      state.token = null;
      button.disabled = false;
      if (error.code === 'NETWORK') {
        showSignIn('The server could not be reached. Try again in a moment.');
      } else {
        try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage blocked */ }
        showSignIn(error.code === 'UNAUTHENTICATED'
          ? 'That token was not accepted. Check it and try again.'
          : errorWords(error));
      }
      return;
    }
    button.disabled = false;
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage blocked */ }
    state.signedIn = true;
    state.me = me;
    renderMe();
    $('signin').hidden = true;
    $('account').hidden = false;
    $('app').hidden = false;
    startLive();
    loadDirectory();
    loadConversations();
    state.tick = setInterval(refreshClocks, 30000);
  }

  function signOut(message) {
    if (state.live) state.live.close();
    state.live = null;
    clearInterval(state.tick);
    clearTimeout(state.markReadTimer);
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage blocked */ }
    for (const media of state.media.values()) media.then((m) => URL.revokeObjectURL(m.url), () => {});
    Object.assign(state, {
      token: null, signedIn: false, me: null, pageInfo: null, selectedId: null, thread: null,
      lastPosition: null, pendingSend: null, liveTouched: null, templates: [],
    });
    state.channels.clear();
    state.members.clear();
    state.drafts.clear();
    $('reply-text').value = '';
    state.rows.clear();
    state.media.clear();
    state.listSeq += 1;
    $('conversation-list').replaceChildren();
    $('messages').replaceChildren();
    $('thread-view').hidden = true;
    $('thread-empty').hidden = false;
    document.body.classList.remove('show-thread');
    $('channel-filter').replaceChildren(h('option', { value: '', text: 'All channels' }));
    state.filter = { channelId: '', status: '', assignee: '' };
    $('channel-filter').value = '';
    $('status-filter').value = '';
    $('assignee-filter').value = '';
    showSignIn(message);
  }

  function renderMe() {
    const me = state.me;
    setText($('me-email'), me.email);
    setText($('me-role'), ROLE_LABELS[me.role] || me.role);
    $('me-role').dataset.role = me.role;
    $('me-available').checked = !!me.available;
  }

  // --- Channels, members, templates -------------------------------------------

  async function loadDirectory() {
    const results = await Promise.allSettled([gql(Q.channels), gql(Q.members), gql(Q.templates)]);
    if (!state.signedIn) return;
    const [channels, members, templates] = results;
    if (channels.status === 'fulfilled') channels.value.channels.forEach(upsertChannel);
    if (members.status === 'fulfilled') {
      members.value.members.forEach((m) => state.members.set(m.id, m));
      renderAssignOptions();
    }
    if (templates.status === 'fulfilled') {
      state.templates = templates.value.replyTemplates;
      renderTemplateOptions();
    }
  }

  function channelLabel(channel) {
    const status = channel.status === 'EXPIRED' ? ' (connection expired)'
      : channel.status === 'DISCONNECTED' ? ' (disconnected)' : '';
    return `${KIND_LABELS[channel.kind] || channel.kind} · ${channel.name}${status}`;
  }

  function upsertChannel(channel) {
    state.channels.set(channel.id, channel);
    const select = $('channel-filter');
    let option = [...select.options].find((o) => o.value === channel.id);
    if (!option) {
      option = h('option', { value: channel.id });
      select.append(option);
    }
    setText(option, channelLabel(channel));
    if (state.thread) renderThreadHeader();
  }

  function upsertMember(member) {
    state.members.set(member.id, member);
    if (state.me && member.id === state.me.id) {
      state.me = { ...state.me, ...member };
      renderMe();
    }
    renderAssignOptions();
  }

  function renderAssignOptions() {
    const select = $('assign-select');
    const current = select.value;
    const members = [...state.members.values()].sort((a, b) => a.email.localeCompare(b.email));
    select.replaceChildren(
      h('option', { value: '', text: 'Choose a member…' }),
      ...members.map((m) => h('option', {
        value: m.id,
        text: `${m.email}${state.me && m.id === state.me.id ? ' (you)' : ''}${m.available ? '' : ' (away)'}`,
      })),
    );
    if (current && state.members.has(current)) select.value = current;
  }

  function renderTemplateOptions() {
    const select = $('template-select');
    const kind = state.thread && state.thread.conv ? state.thread.conv.channelKind : null;
    const usable = state.templates.filter((t) => !kind || t.kind === kind);
    const current = select.value;
    select.replaceChildren(
      h('option', { value: '', text: usable.length ? 'Choose a template…' : 'No templates for this channel' }),
      ...usable.map((t) => h('option', {
        value: t.id,
        text: `${t.name} (${t.bubbles.length} bubble${t.bubbles.length === 1 ? '' : 's'})`,
      })),
    );
    if (usable.some((t) => t.id === current)) select.value = current;
    const none = usable.length === 0;
    select.disabled = none;
    $('template-insert').disabled = none;
    $('template-send').disabled = none;
  }

  // --- Conversation list -----------------------------------------------------

  function matchesFilter(conv) {
    const f = state.filter;
    if (f.channelId && (!conv.channel || conv.channel.id !== f.channelId)) return false;
    if (f.status && conv.status !== f.status) return false;
    if (f.assignee === 'me' && (!conv.assignee || !state.me || conv.assignee.id !== state.me.id)) return false;
    if (f.assignee === 'none' && conv.assignee) return false;
    return true;
  }

  function filterVariables() {
    const f = state.filter;
    return {
      channelIds: f.channelId ? [f.channelId] : null,
      status: f.status || null,
      assigneeId: f.assignee === 'me' && state.me ? state.me.id : null,
      unassigned: f.assignee === 'none' ? true : null,
    };
  }

  async function loadConversations({ append = false } = {}) {
    const seq = ++state.listSeq;
    if (!append) state.liveTouched = new Set();
    const more = $('load-more');
    more.disabled = true;
    showError($('list-error'), null);
    let data;
    try {
      data = await gql(Q.conversations, {
        ...filterVariables(),
        first: LIST_PAGE,
        after: append && state.pageInfo ? state.pageInfo.endCursor : null,
      });
    } catch (error) {
      if (seq === state.listSeq) {
        more.disabled = false;
        if (state.signedIn) showError($('list-error'), error);
      }
      return;
    }
    if (seq !== state.listSeq || !state.signedIn) return;
    const { nodes, pageInfo } = data.conversations;
    const touched = state.liveTouched || new Set();
    if (!append) {
      const keep = new Set(nodes.map((c) => c.id));
      for (const [id, entry] of state.rows) {
        if (!keep.has(id) && !touched.has(id)) removeRow(entry);
      }
    }
    state.pageInfo = pageInfo;
    for (const conv of nodes) {
      // A live update that arrived during the load is newer than the page.
      if (!touched.has(conv.id) || !state.rows.has(conv.id)) upsertConversation(conv, { fromList: true });
    }
    state.liveTouched = null;
    more.hidden = !pageInfo.hasNextPage;
    more.disabled = false;
    updateListEmpty();
  }

  function updateListEmpty() {
    $('list-empty').hidden = state.rows.size > 0;
  }

  function sortKey(conv) {
    const t = Date.parse(conv.lastMessageAt);
    return Number.isNaN(t) ? 0 : t;
  }

  // True when `a` belongs above `b`: newest activity first.
  function before(a, b) {
    const ka = sortKey(a);
    const kb = sortKey(b);
    return ka !== kb ? ka > kb : a.id > b.id;
  }

  function onInboxUpdate(conv) {
    if (!conv) return;
    if (conv.position) state.lastPosition = conv.position;
    if (state.liveTouched) state.liveTouched.add(conv.id);
    upsertConversation(conv, { live: true });
  }

  function upsertConversation(conv, { live = false } = {}) {
    let entry = state.rows.get(conv.id);
    const previous = entry ? entry.conv : null;
    if (state.thread && state.thread.id === conv.id) {
      state.thread.conv = conv;
      renderThreadHeader();
      if (conv.unreadCount > 0) scheduleMarkRead();
    }
    if (!matchesFilter(conv)) {
      if (entry) removeRow(entry);
      updateListEmpty();
      return;
    }
    if (!entry) {
      // A live change to a row older than the loaded pages comes with "Load more".
      const list = $('conversation-list');
      const last = list.lastElementChild;
      const lastConv = last && state.rows.get(last.dataset.rowId);
      if (live && state.pageInfo && state.pageInfo.hasNextPage && lastConv && before(lastConv.conv, conv)) return;
      entry = createRow(conv);
      state.rows.set(conv.id, entry);
    }
    entry.conv = conv;
    renderRow(entry, previous);
    placeRow(entry);
    updateListEmpty();
  }

  function createRow(conv) {
    const parts = {
      avatar: h('span', { class: 'avatar', 'aria-hidden': 'true' }),
      channel: h('span', { class: 'badge channel-badge' }),
      name: h('span', { class: 'conv-name' }),
      time: h('time', { class: 'conv-time' }),
      preview: h('span', { class: 'conv-preview' }),
      unread: h('span', { class: 'unread' }),
      window: h('span', { class: 'badge window-badge' }),
      status: h('span', { class: 'badge status-badge' }),
      assignee: h('span', { class: 'conv-assignee' }),
    };
    parts.meta = h('span', { class: 'conv-line conv-meta' }, parts.window, parts.status, parts.assignee);
    const button = h('button', { type: 'button', class: 'conv', 'data-conversation-id': conv.id },
      parts.avatar,
      h('span', { class: 'conv-body' },
        h('span', { class: 'conv-line' }, parts.channel, parts.name, parts.time),
        h('span', { class: 'conv-line' }, parts.preview, parts.unread),
        parts.meta));
    const li = h('li', { class: 'conv-item', 'data-row-id': conv.id }, button);
    return { conv, li, button, parts };
  }

  function renderRow(entry, previous) {
    const { conv, parts, button } = entry;
    const name = contactName(conv);
    setText(parts.avatar, name.trim().charAt(0).toUpperCase() || '?');
    setText(parts.channel, KIND_LABELS[conv.channelKind] || conv.channelKind);
    setData(parts.channel, 'kind', conv.channelKind);
    parts.channel.title = conv.channel ? conv.channel.name : '';
    setText(parts.name, name);
    setText(parts.time, shortTime(conv.lastMessageAt));
    parts.time.setAttribute('datetime', conv.lastMessageAt);
    parts.time.title = fullTime(conv.lastMessageAt);
    setText(parts.preview, conv.lastMessagePreview || '');
    if (conv.unreadCount > 0) {
      parts.unread.hidden = false;
      parts.unread.replaceChildren(String(conv.unreadCount),
        h('span', { class: 'sr-only', text: conv.unreadCount === 1 ? ' unread message' : ' unread messages' }));
    } else {
      parts.unread.hidden = true;
      parts.unread.replaceChildren();
    }
    renderWindowBadge(parts.window, conv);
    // No window, no badge: LINE rows carry none at all.
    if (parts.window.hidden) parts.window.remove();
    else if (parts.window.parentNode !== parts.meta) parts.meta.prepend(parts.window);
    setText(parts.status, conv.status === 'RESOLVED' ? 'Resolved' : 'Open');
    setData(parts.status, 'status', conv.status);
    setText(parts.assignee, conv.assignee ? `→ ${memberLabel(conv.assignee)}` : 'Unassigned');
    setData(button, 'status', conv.status);
    setData(button, 'channelKind', conv.channelKind);
    setData(button, 'unread', String(conv.unreadCount));
    button.classList.toggle('has-unread', conv.unreadCount > 0);
    if (conv.id === state.selectedId) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
    if (previous && conv.unreadCount > previous.unreadCount) {
      button.classList.remove('flash');
      void button.offsetWidth; // restart the animation
      button.classList.add('flash');
    }
  }

  function renderWindowBadge(el, conv) {
    const info = windowInfo(conv);
    setText(el, info.badge);
    el.hidden = !info.badge;
    setData(el, 'phase', info.badge ? info.phase : null);
    el.title = info.hint;
  }

  // Moves a row to its place, newest activity first, touching the DOM only
  // when it is out of place.
  function placeRow(entry) {
    const list = $('conversation-list');
    const { li, conv } = entry;
    const rowAt = (el) => (el ? state.rows.get(el.dataset.rowId) : null);
    const prev = rowAt(li.parentNode === list ? li.previousElementSibling : null);
    const next = rowAt(li.parentNode === list ? li.nextElementSibling : null);
    if (li.parentNode === list && (!prev || before(prev.conv, conv)) && (!next || before(conv, next.conv))) return;
    let anchor = list.firstElementChild;
    while (anchor) {
      const other = rowAt(anchor);
      if (anchor !== li && other && before(conv, other.conv)) break;
      anchor = anchor.nextElementSibling;
    }
    if (anchor === li) return;
    const hadFocus = li.contains(document.activeElement);
    list.insertBefore(li, anchor);
    if (hadFocus) entry.button.focus();
  }

  function removeRow(entry) {
    state.rows.delete(entry.conv.id);
    entry.li.remove();
  }

  function onListKeydown(event) {
    const button = event.target.closest('button.conv');
    if (!button) return;
    const buttons = [...$('conversation-list').querySelectorAll('button.conv')];
    const index = buttons.indexOf(button);
    let target = null;
    if (event.key === 'ArrowDown') target = buttons[index + 1];
    else if (event.key === 'ArrowUp') target = buttons[index - 1];
    else if (event.key === 'Home') target = buttons[0];
    else if (event.key === 'End') target = buttons[buttons.length - 1];
    if (target) {
      event.preventDefault();
      target.focus();
    }
  }

  function markSelected() {
    for (const entry of state.rows.values()) {
      if (entry.conv.id === state.selectedId) entry.button.setAttribute('aria-current', 'true');
      else entry.button.removeAttribute('aria-current');
    }
  }

  // --- Thread ------------------------------------------------------------------

  async function openConversation(id) {
    if (state.thread && state.thread.id === id) {
      document.body.classList.add('show-thread');
      return;
    }
    if (state.thread) state.drafts.set(state.thread.id, $('reply-text').value);
    closeThread();
    $('reply-text').value = state.drafts.get(id) || '';
    state.drafts.delete(id);
    state.selectedId = id;
    markSelected();
    const entry = state.rows.get(id);
    state.thread = {
      id,
      conv: entry ? entry.conv : null,
      messages: new Map(),
      startCursor: null,
      hasPrevious: false,
      loaded: false,
      unsubscribe: null,
    };
    const thread = state.thread;
    $('thread-empty').hidden = true;
    $('thread-view').hidden = false;
    document.body.classList.add('show-thread');
    $('messages').replaceChildren();
    $('messages').setAttribute('aria-busy', 'true');
    showError($('reply-error'), null);
    showError($('action-error'), null);
    state.pendingSend = null;
    if (thread.conv) renderThreadHeader();
    else setText($('thread-title'), 'Loading…');
    renderTemplateOptions();
    // Subscribe before reading, so nothing falls between the two.
    if (state.live) {
      thread.unsubscribe = state.live.subscribe(
        () => ({ query: Q.conversationUpdates, variables: { id } }),
        { next: (data) => onMessageUpdate(id, data.conversationUpdates) },
      );
    }
    await loadThread(thread);
  }

  async function loadThread(thread) {
    let data;
    try {
      data = await gql(Q.thread, { id: thread.id, last: THREAD_PAGE });
    } catch (error) {
      if (state.thread === thread) {
        $('messages').removeAttribute('aria-busy');
        showError($('action-error'), error);
      }
      return;
    }
    if (state.thread !== thread) return;
    $('messages').removeAttribute('aria-busy');
    const conv = data.conversation;
    if (!conv) {
      showError($('action-error'), ERROR_WORDS.NOT_FOUND);
      return;
    }
    const { messages, ...row } = conv;
    thread.startCursor = messages.pageInfo.startCursor;
    thread.hasPrevious = messages.pageInfo.hasPreviousPage;
    $('load-earlier').hidden = !thread.hasPrevious;
    upsertConversation(row);
    thread.conv = row;
    renderThreadHeader();
    renderTemplateOptions();
    for (const msg of messages.nodes) upsertMessage(thread, msg, { quiet: true });
    thread.loaded = true;
    scrollToEnd(true);
    if (row.unreadCount > 0) markRead(thread.id);
  }

  function reloadThread() {
    const thread = state.thread;
    if (thread) loadThread(thread);
  }

  async function loadEarlier() {
    const thread = state.thread;
    if (!thread || !thread.hasPrevious) return;
    const button = $('load-earlier');
    button.disabled = true;
    try {
      const data = await gql(Q.thread, { id: thread.id, last: THREAD_PAGE, before: thread.startCursor });
      if (state.thread !== thread || !data.conversation) return;
      const { messages } = data.conversation;
      const scroller = $('messages-scroll');
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const msg of messages.nodes) upsertMessage(thread, msg, { quiet: true });
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
      thread.startCursor = messages.pageInfo.startCursor;
      thread.hasPrevious = messages.pageInfo.hasPreviousPage;
      button.hidden = !thread.hasPrevious;
    } catch (error) {
      showError($('action-error'), error);
    } finally {
      button.disabled = false;
    }
  }

  function closeThread() {
    if (state.thread && state.thread.unsubscribe) state.thread.unsubscribe();
    state.thread = null;
    clearTimeout(state.markReadTimer);
    for (const media of state.media.values()) media.then((m) => URL.revokeObjectURL(m.url), () => {});
    state.media.clear();
  }

  function renderThreadHeader() {
    const thread = state.thread;
    if (!thread || !thread.conv) return;
    const conv = thread.conv;
    setText($('thread-title'), contactName(conv));
    const channel = (conv.channel && state.channels.get(conv.channel.id)) || conv.channel;
    const channelEl = $('thread-channel');
    channelEl.replaceChildren(
      h('span', { class: 'badge channel-badge', 'data-kind': conv.channelKind, text: KIND_LABELS[conv.channelKind] || conv.channelKind }),
      channel ? ` ${channel.name}` : '',
    );
    const status = $('thread-status');
    setText(status, conv.status === 'RESOLVED' ? 'Resolved' : 'Open');
    setData(status, 'status', conv.status);
    renderWindowBadge($('thread-window'), conv);
    setText($('thread-assignee'), conv.assignee ? `Assigned to ${memberLabel(conv.assignee)}` : 'Unassigned');
    $('resolve').hidden = conv.status === 'RESOLVED';
    $('reopen').hidden = conv.status !== 'RESOLVED';
    $('unassign').hidden = !conv.assignee;
    $('assign-me').hidden = !!(conv.assignee && state.me && conv.assignee.id === state.me.id);
    $('thread-view').dataset.threadId = conv.id;

    const info = windowInfo(conv);
    let hint = info.hint;
    if (channel && channel.status === 'EXPIRED') {
      hint = `${hint} The channel's connection expired: replies wait until an owner reauthorizes it.`.trim();
    } else if (channel && channel.status === 'DISCONNECTED') {
      hint = 'This channel is disconnected: no replies can be sent.';
    }
    setText($('reply-window-hint'), hint);
    $('reply-window-hint').hidden = !hint;
    setData($('reply-form'), 'phase', info.phase);
    // Promotional content is a Facebook notion; LINE has no window.
    $('reply-promotional').closest('label').hidden = conv.channelKind !== 'FACEBOOK';
  }

  function onMessageUpdate(conversationId, msg) {
    const thread = state.thread;
    if (!thread || thread.id !== conversationId || !msg) return;
    const isNew = !thread.messages.has(msg.id);
    upsertMessage(thread, msg, { quiet: false });
    if (isNew && msg.direction === 'INBOUND' && thread.conv) {
      announce(`New message from ${contactName(thread.conv)}: ${msg.text || describeAttachments(msg)}`);
    }
  }

  function describeAttachments(msg) {
    if (!msg.attachments.length) return '';
    return msg.attachments.map((a) => a.fileName || a.title || a.kind.toLowerCase()).join(', ');
  }

  function contentSignature(msg) {
    return JSON.stringify([msg.text, msg.unsent, msg.attachments]);
  }

  function upsertMessage(thread, msg, { quiet }) {
    const list = $('messages');
    let entry = thread.messages.get(msg.id);
    if (entry) {
      // Never step a delivery state back (a page read before a live update).
      const old = entry.msg.deliveryState;
      if (old && msg.deliveryState && DELIVERY_RANK[msg.deliveryState] < DELIVERY_RANK[old]) {
        msg = { ...msg, deliveryState: old, failureReason: entry.msg.failureReason };
      }
      const contentChanged = contentSignature(entry.msg) !== contentSignature(msg);
      entry.msg = msg;
      renderMessage(entry, contentChanged);
      return;
    }
    const nearEnd = isNearEnd();
    entry = { msg, li: h('li', { 'data-message-id': msg.id }) };
    thread.messages.set(msg.id, entry);
    renderMessage(entry, true);
    // Platform time order, oldest first: new messages almost always go last.
    const t = Date.parse(msg.sentAt);
    let anchor = null;
    for (let el = list.lastElementChild; el; el = el.previousElementSibling) {
      const other = thread.messages.get(el.dataset.messageId);
      if (other && Date.parse(other.msg.sentAt) <= t) break;
      anchor = el;
    }
    list.insertBefore(entry.li, anchor);
    if (!quiet && (nearEnd || msg.direction === 'OUTBOUND')) scrollToEnd(false);
  }

  function isNearEnd() {
    const s = $('messages-scroll');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  function scrollToEnd(instant) {
    const s = $('messages-scroll');
    s.scrollTo({ top: s.scrollHeight, behavior: instant ? 'auto' : 'smooth' });
  }

  function renderMessage(entry, contentChanged) {
    const { msg, li } = entry;
    const outbound = msg.direction === 'OUTBOUND';
    li.className = `msg ${outbound ? 'msg-out' : 'msg-in'}`;
    li.dataset.direction = msg.direction;
    setData(li, 'delivery', outbound ? msg.deliveryState : null);
    if (contentChanged || !entry.bubble) {
      entry.bubble = h('div', { class: 'bubble' });
      if (msg.unsent) {
        entry.bubble.append(h('p', { class: 'unsent', text: 'The customer unsent this message.' }));
      } else {
        if (msg.text) entry.bubble.append(h('p', { class: 'text', text: msg.text }));
        for (const attachment of msg.attachments) entry.bubble.append(attachmentElement(attachment));
        if (!msg.text && !msg.attachments.length) entry.bubble.append(h('p', { class: 'unsent', text: '(empty message)' }));
      }
      entry.meta = h('div', { class: 'msg-meta' });
      li.replaceChildren(entry.bubble, entry.meta);
    }
    const meta = [];
    const time = h('time', { datetime: msg.sentAt, title: fullTime(msg.sentAt), text: shortTime(msg.sentAt) });
    meta.push(time);
    if (outbound && msg.author) meta.push(h('span', { class: 'author', text: memberLabel(msg.author) }));
    if (outbound && msg.deliveryState) {
      const delivery = msg.deliveryState;
      const label = DELIVERY_LABELS[delivery] || delivery;
      meta.push(h('span', { class: 'delivery', 'data-state': delivery, text: label }));
      if (delivery === 'FAILED') {
        if (msg.failureReason) meta.push(h('span', { class: 'failure', text: msg.failureReason }));
        if (msg.text) {
          meta.push(h('button', {
            type: 'button',
            class: 'button-quiet button-small',
            text: 'Copy to reply box',
            onclick: () => { $('reply-text').value = msg.text; $('reply-text').focus(); },
          }));
        }
      }
    }
    entry.meta.replaceChildren(...meta);
  }

  // --- Attachments ----------------------------------------------------------------

  const RASTER = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

  // Media URLs point at this server's authenticated media route; they are
  // fetched with the token, and only from this origin.
  function mediaPath(url) {
    if (!url) return null;
    try {
      const u = new URL(url, location.href);
      if (u.pathname.startsWith('/media/')) return u.pathname;
      if (u.origin === location.origin) return u.pathname + u.search;
    } catch (_) { /* not a URL */ }
    return null;
  }

  function fetchMedia(path) {
    let promise = state.media.get(path);
    if (!promise) {
      promise = fetch(path, { headers: { Authorization: `Bearer ${state.token}` }, credentials: 'omit' })
        .then((r) => {
          if (!r.ok) throw new Error(`media ${r.status}`);
          return r.blob();
        })
        .then((blob) => ({ url: URL.createObjectURL(blob), type: blob.type }));
      state.media.set(path, promise);
      promise.catch(() => state.media.delete(path));
    }
    return promise;
  }

  // Downloads through a blob typed as bytes, so nothing a customer sent is
  // ever rendered as a page of this origin.
  async function download(path, fileName, link) {
    link.setAttribute('aria-busy', 'true');
    try {
      const r = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` }, credentials: 'omit' });
      if (!r.ok) throw new Error(String(r.status));
      const bytes = await r.blob();
      const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      const a = h('a', { href: url, download: fileName || 'attachment' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (_) {
      showError($('action-error'), 'The file could not be downloaded.');
    } finally {
      link.removeAttribute('aria-busy');
    }
  }

  function safeLink(url) {
    try {
      const u = new URL(url);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  function attachmentElement(a) {
    const kindWord = a.kind.charAt(0) + a.kind.slice(1).toLowerCase();
    const name = a.fileName || a.title || kindWord;
    const size = a.sizeBytes != null ? formatBytes(a.sizeBytes) : '';
    const path = mediaPath(a.url);
    const wrap = h('div', { class: 'attachment', 'data-kind': a.kind });

    if (a.kind === 'STICKER') {
      wrap.append(h('span', { class: 'sticker' }, icon(ICONS.sticker), 'Sticker'));
      return wrap;
    }
    if (a.kind === 'LOCATION') {
      const coords = a.latitude != null && a.longitude != null
        ? `${a.latitude.toFixed(5)}, ${a.longitude.toFixed(5)}` : '';
      wrap.append(icon(ICONS.pin), h('span', { text: ['Location', a.title, coords].filter(Boolean).join(' · ') }));
      return wrap;
    }
    if (a.kind === 'LINK') {
      const href = safeLink(a.url);
      const label = a.title || a.url || 'Link';
      wrap.append(href
        ? h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow', text: label })
        : h('span', { text: label }));
      return wrap;
    }
    if (!path) {
      wrap.append(h('span', { class: 'pending', text: `${kindWord}${a.fileName ? ` ${a.fileName}` : ''} (${a.url ? 'not available here' : 'being stored…'})` }));
      return wrap;
    }
    if (a.kind === 'IMAGE') {
      const img = h('img', { alt: a.fileName ? `Image ${a.fileName}` : 'Image', loading: 'lazy', decoding: 'async' });
      const link = h('a', { href: '#', class: 'image-link', title: 'Open the full image' }, img);
      wrap.append(link);
      fetchMedia(path).then(({ url, type }) => {
        // Shown only as a raster image; anything else becomes a download.
        if (RASTER.has(type)) {
          img.src = url;
          link.href = url;
          link.target = '_blank';
          link.rel = 'noopener';
        } else {
          link.replaceWith(fileLink(path, name, size));
        }
      }, () => {
        link.replaceWith(h('span', { class: 'pending', text: 'Image (could not be loaded)' }));
      });
      link.addEventListener('click', (event) => { if (!img.src) event.preventDefault(); });
      return wrap;
    }
    if (a.kind === 'VIDEO' || a.kind === 'AUDIO') {
      const play = h('button', {
        type: 'button',
        class: 'button-quiet',
        text: `Play ${kindWord.toLowerCase()}${a.fileName ? ` ${a.fileName}` : ''}${size ? ` (${size})` : ''}`,
      });
      play.addEventListener('click', () => {
        play.disabled = true;
        fetchMedia(path).then(({ url }) => {
          const player = h(a.kind === 'VIDEO' ? 'video' : 'audio', { controls: true, src: url, preload: 'metadata' });
          play.replaceWith(player);
          player.focus();
        }, () => {
          play.disabled = false;
          showError($('action-error'), 'The media could not be loaded.');
        });
      });
      wrap.append(play, ' ', fileLink(path, 'Download', ''));
      return wrap;
    }
    wrap.append(fileLink(path, name, size));
    return wrap;
  }

  function fileLink(path, name, size) {
    const link = h('a', { href: path, class: 'file' },
      icon(ICONS.download),
      h('span', { class: 'file-name', text: name }),
      size ? h('span', { class: 'file-size', text: size }) : null);
    link.addEventListener('click', (event) => {
      event.preventDefault();
      download(path, name === 'Download' ? undefined : name, link);
    });
    return link;
  }

  const ICONS = {
    sticker: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zM8 14c1 1.5 2.3 2.2 4 2.2s3-.7 4-2.2M9 9.5h.01M15 9.5h.01',
    pin: 'M12 21s-7-6.2-7-11.5a7 7 0 0 1 14 0C19 14.8 12 21 12 21zM12 12a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z',
    download: 'M12 3v12M7 10l5 5 5-5M5 21h14',
  };

  // A small stroked icon, hidden from assistive technology (the text beside
  // it says the same).
  function icon(d) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    for (const [k, v] of Object.entries({
      viewBox: '0 0 24 24', width: '16', height: '16', 'aria-hidden': 'true', focusable: 'false',
      class: 'icon', fill: 'none', stroke: 'currentColor', 'stroke-width': '2',
      'stroke-linecap': 'round', 'stroke-linejoin': 'round',
    })) svg.setAttribute(k, v);
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
    return svg;
  }

  // --- Replying -------------------------------------------------------------------

  function newKey() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    // Pages served over plain http on a LAN address have no randomUUID.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // Sends a reply. A retry of the same content after an unknown outcome
  // (the server could not be reached) reuses its idempotency key, so the
  // customer never gets it twice; anything else is a new attempt.
  async function send(input, { onSent } = {}) {
    const thread = state.thread;
    if (!thread) return;
    const errorEl = $('reply-error');
    showError(errorEl, null);
    const signature = JSON.stringify(input);
    const key = state.pendingSend && state.pendingSend.signature === signature
      ? state.pendingSend.key : newKey();
    state.pendingSend = { signature, key };
    const buttons = [$('reply-send'), $('template-send')];
    buttons.forEach((b) => { b.disabled = true; });
    $('reply-form').setAttribute('aria-busy', 'true');
    try {
      const data = await gql(Q.sendReply, { input: { ...input, idempotencyKey: key } });
      state.pendingSend = null;
      if (state.thread === thread) {
        for (const msg of data.sendReply) upsertMessage(thread, msg, { quiet: false });
      }
      if (onSent) onSent();
    } catch (error) {
      if (error.code !== 'NETWORK') state.pendingSend = null;
      if (state.thread === thread) showError(errorEl, error);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      $('reply-form').removeAttribute('aria-busy');
      renderTemplateOptions();
    }
  }

  function onReplySubmit(event) {
    event.preventDefault();
    const thread = state.thread;
    if (!thread) return;
    const text = $('reply-text').value;
    const bubbles = [];
    if (text.trim()) bubbles.push({ text });
    const url = $('attach-url').value.trim();
    const fileName = $('attach-name').value.trim();
    const sizeText = $('attach-size').value.trim();
    if (url || fileName || sizeText) {
      const sizeBytes = Number(sizeText);
      if (!url || !fileName || sizeText === '' || !Number.isInteger(sizeBytes) || sizeBytes < 0) {
        showError($('reply-error'), 'To attach a file, give its https link, its file name and its size in bytes.');
        $('attach').open = true;
        return;
      }
      bubbles.push({ attachment: { url, fileName, sizeBytes } });
    }
    if (!bubbles.length) {
      showError($('reply-error'), 'Write a message (or attach a file) first.');
      $('reply-text').focus();
      return;
    }
    const input = { conversationId: thread.id, bubbles };
    if (thread.conv && thread.conv.channelKind === 'FACEBOOK' && $('reply-promotional').checked) {
      input.promotional = true;
    }
    send(input, {
      onSent: () => {
        $('reply-text').value = '';
        $('attach-url').value = '';
        $('attach-name').value = '';
        $('attach-size').value = '';
        $('attach').open = false;
        $('reply-promotional').checked = false;
      },
    });
  }

  function selectedTemplate() {
    const id = $('template-select').value;
    return state.templates.find((t) => t.id === id) || null;
  }

  function insertTemplate() {
    const template = selectedTemplate();
    if (!template) {
      showError($('reply-error'), 'Choose a template first.');
      return;
    }
    const texts = template.bubbles.filter((b) => b.text).map((b) => b.text);
    const box = $('reply-text');
    box.value = box.value ? `${box.value}\n\n${texts.join('\n\n')}` : texts.join('\n\n');
    box.focus();
    if (template.bubbles.some((b) => b.attachment)) {
      showError($('reply-error'), 'The template\'s attachments are sent only with "Send template".');
    } else {
      showError($('reply-error'), null);
    }
  }

  function sendTemplate() {
    const template = selectedTemplate();
    const thread = state.thread;
    if (!thread) return;
    if (!template) {
      showError($('reply-error'), 'Choose a template first.');
      return;
    }
    const bubbles = template.bubbles.map((b) => (b.attachment
      ? { attachment: { url: b.attachment.url, fileName: b.attachment.fileName, sizeBytes: b.attachment.sizeBytes } }
      : { text: b.text || '' }));
    send({ conversationId: thread.id, bubbles, templateId: template.id });
  }

  // --- Conversation actions ----------------------------------------------------

  async function act(query, variables, field) {
    const thread = state.thread;
    if (!thread) return;
    const errorEl = $('action-error');
    showError(errorEl, null);
    const buttons = document.querySelectorAll('.actions button');
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const data = await gql(query, { id: thread.id, ...variables });
      upsertConversation(data[field]);
    } catch (error) {
      if (state.thread === thread) showError(errorEl, error);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function scheduleMarkRead() {
    clearTimeout(state.markReadTimer);
    if (document.visibilityState !== 'visible' || !state.thread || !state.thread.loaded) return;
    const id = state.thread.id;
    state.markReadTimer = setTimeout(() => markRead(id), 800);
  }

  async function markRead(id) {
    try {
      const data = await gql(Q.markRead, { id });
      upsertConversation(data.markRead);
    } catch (_) {
      // Unread counts are a convenience; the next update tries again.
    }
  }

  async function setAvailability(available) {
    const box = $('me-available');
    box.disabled = true;
    try {
      const data = await gql(Q.setAvailability, { available });
      upsertMember(data.setAvailability);
    } catch (error) {
      box.checked = !available;
      showError($('list-error'), error);
    } finally {
      box.disabled = false;
    }
  }

  // --- Clocks: window badges and times move on their own ---------------------------

  function refreshClocks() {
    for (const entry of state.rows.values()) renderRow(entry, entry.conv);
    if (state.thread && state.thread.conv) renderThreadHeader();
  }

  // --- Wiring ------------------------------------------------------------------------

  function bind() {
    $('signin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('signin-token').value.trim();
      if (!token) {
        showError($('signin-error'), 'Paste a token first.');
        $('signin-token').focus();
        return;
      }
      showError($('signin-error'), null);
      signIn(token);
    });
    $('sign-out').addEventListener('click', () => signOut());
    $('me-available').addEventListener('change', (event) => setAvailability(event.target.checked));

    const onFilter = () => {
      state.filter = {
        channelId: $('channel-filter').value,
        status: $('status-filter').value,
        assignee: $('assignee-filter').value,
      };
      loadConversations();
    };
    $('channel-filter').addEventListener('change', onFilter);
    $('status-filter').addEventListener('change', onFilter);
    $('assignee-filter').addEventListener('change', onFilter);

    const list = $('conversation-list');
    list.addEventListener('click', (event) => {
      const button = event.target.closest('button.conv');
      if (button) openConversation(button.dataset.conversationId);
    });
    list.addEventListener('keydown', onListKeydown);
    $('load-more').addEventListener('click', () => loadConversations({ append: true }));

    $('thread-back').addEventListener('click', () => {
      document.body.classList.remove('show-thread');
      const entry = state.selectedId && state.rows.get(state.selectedId);
      if (entry) entry.button.focus();
    });
    $('load-earlier').addEventListener('click', loadEarlier);

    $('reply-form').addEventListener('submit', onReplySubmit);
    $('reply-text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        $('reply-form').requestSubmit($('reply-send'));
      }
    });
    $('template-insert').addEventListener('click', insertTemplate);
    $('template-send').addEventListener('click', sendTemplate);

    $('assign-apply').addEventListener('click', () => {
      const agentId = $('assign-select').value;
      if (!agentId) {
        showError($('action-error'), 'Choose a member to assign first.');
        $('assign-select').focus();
        return;
      }
      act(Q.assign, { agentId }, 'assignConversation');
    });
    $('assign-me').addEventListener('click', () => {
      if (state.me) act(Q.assign, { agentId: state.me.id }, 'assignConversation');
    });
    $('unassign').addEventListener('click', () => act(Q.unassign, {}, 'unassignConversation'));
    $('resolve').addEventListener('click', () => act(Q.resolve, {}, 'resolveConversation'));
    $('reopen').addEventListener('click', () => act(Q.reopen, {}, 'reopenConversation'));

    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && state.thread && state.thread.conv
          && state.thread.conv.unreadCount > 0) scheduleMarkRead();
    });
    window.addEventListener('online', () => { if (state.live) state.live.reconnectNow(); });
    // A sign-in link pasted into a tab that already shows the inbox.
    window.addEventListener('hashchange', () => {
      const token = tokenFromHash();
      if (!token) return;
      if (state.signedIn) signOut();
      signIn(token);
    });
  }

  function start() {
    bind();
    const fromHash = tokenFromHash();
    let stored = null;
    try { stored = sessionStorage.getItem(TOKEN_KEY); } catch (_) { /* storage blocked */ }
    const token = fromHash || stored;
    if (token) signIn(token);
    else showSignIn();
  }

  start();
})();
