// fleetrun console: a small single-page app over the server's own AWS operations.
// Every read and change is an AWS operation posted to /console/api (X-Amz-Target + JSON, as on
// POST /), so the page holds no rules of its own: the server authorizes and validates each call.
// No framework, no build step; text goes into the page through textContent only.
'use strict';

const FINAL = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled']);
const LIVE = new Set(['Pending', 'InProgress', 'Delayed', 'Cancelling']);
const STATUSES = ['Pending', 'InProgress', 'Success', 'Cancelled', 'Failed', 'TimedOut', 'Cancelling'];
const COMMAND_POLL_MS = 1000;
const OUTPUT_POLL_MS = 500;
/** Invocations past which the command page reads them less often. */
const WIDE_FANOUT = 200;

const app = { who: null, gen: 0 };

// ------------------------------------------------------------------ page building

/** An element: h('a', {href: '#/x', class: 'y'}, 'text', child…). Attributes starting `on` are listeners. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');

function when(epochSeconds) {
  if (!epochSeconds) return '';
  return new Date(epochSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function badge(status) {
  return h('span', { class: 'badge s-' + String(status || '').replace(/[^A-Za-z]/g, '') }, status || '—');
}

function showError(e) {
  const box = $('#error');
  if (!e) { box.hidden = true; box.textContent = ''; return; }
  box.hidden = false;
  box.textContent = '';
  box.append(h('strong', {}, e.code || 'Error'), ': ', e.message || String(e),
    h('button', { type: 'button', class: 'link', onclick: () => showError(null) }, 'Dismiss'));
}

function table(columns, rows, caption) {
  return h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows));
}

/** A labelled form field; `control` gets the id. */
function field(label, control, hint) {
  const id = control.id || ('f-' + Math.random().toString(36).slice(2));
  control.id = id;
  let hintEl = null;
  if (hint) {
    hintEl = h('span', { class: 'hint', id: id + '-hint' }, hint);
    control.setAttribute('aria-describedby', id + '-hint');
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

function select(id, options, value) {
  return h('select', { id, name: id }, options.map(([v, text]) =>
    h('option', { value: v, selected: v === value }, text)));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ calls

class AwsError extends Error {
  constructor(code, message, status) { super(message); this.code = code; this.status = status; }
}

async function post(path, headers, body) {
  const r = await fetch(path, { method: 'POST', credentials: 'same-origin', headers, body });
  const text = await r.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (_) { data = { Message: text }; }
  if (!r.ok) {
    const err = new AwsError(data.__type || ('HTTP ' + r.status), data.Message || r.statusText, r.status);
    if (r.status === 401 && path !== '/console/session') signedOut(err);
    throw err;
  }
  return data;
}

/** One AWS operation as the signed-in key: `call('AmazonSSM.ListCommands', {...})`. */
function call(target, body) {
  return post('/console/api', {
    'Content-Type': 'application/x-amz-json-1.1',
    'X-Amz-Target': target,
    'X-Fleetrun-Csrf': app.who ? app.who.CsrfToken : '',
  }, JSON.stringify(body || {}));
}
const ssm = (op, body) => call('AmazonSSM.' + op, body);

/** Every page of a listing (`key` holds the items). */
async function all(op, body, key, limit = 20) {
  let out = [];
  let token;
  for (let i = 0; i < limit; i++) {
    const page = await ssm(op, token ? { ...body, NextToken: token } : body);
    out = out.concat(page[key] || []);
    token = page.NextToken;
    if (!token) break;
  }
  return out;
}

// ------------------------------------------------------------------ sign in / out

function signedOut(err) {
  app.who = null;
  app.gen++;
  $('#nav').hidden = true;
  $('#who').hidden = true;
  renderSignIn(err);
}

function renderSignIn(err) {
  const id = h('input', { id: 'access-key-id', name: 'AccessKeyId', autocomplete: 'username', required: true, spellcheck: 'false' });
  const secret = h('input', { id: 'secret-access-key', name: 'SecretAccessKey', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { class: 'card narrow', id: 'sign-in' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Use an access key: the administrator key printed by ',
      h('code', {}, 'fleetrun server'), ', or one from ', h('code', {}, 'fleetrun admin create-key'), '.'),
    field('Access key ID', id),
    field('Secret access key', secret),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(null);
    try {
      app.who = await post('/console/session', { 'Content-Type': 'application/json' },
        JSON.stringify({ AccessKeyId: id.value.trim(), SecretAccessKey: secret.value }));
      signedIn();
    } catch (e) {
      showError(e);
      secret.value = '';
      secret.focus();
    }
  });
  main().replaceChildren(form);
  if (err && err.code !== 'MissingAuthenticationTokenException') showError(err);
  document.title = 'Sign in · fleetrun';
  id.focus();
}

function signedIn() {
  $('#nav').hidden = false;
  $('#nav-send').hidden = !app.who.CanSendCommand;
  $('#who').hidden = false;
  $('#who-name').textContent = app.who.UserName + ' (' + app.who.AccessKeyId + ')';
  if (!location.hash || location.hash === '#') location.hash = '#/commands';
  else route();
}

async function signOut() {
  try {
    await post('/console/session/end', { 'X-Fleetrun-Csrf': app.who ? app.who.CsrfToken : '' }, '');
  } catch (_) { /* the cookie is gone or was never valid: signed out all the same */ }
  signedOut();
}

// ------------------------------------------------------------------ routing

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').map(decodeURIComponent), params: new URLSearchParams(query || '') };
}

async function route() {
  if (!app.who) return;
  const gen = ++app.gen;
  showError(null);
  const { parts, params } = parseHash();
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === parts[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const alive = () => gen === app.gen;
  try {
    switch (parts[0]) {
      case 'command': await commandPage(parts[1], alive); break;
      case 'nodes': await nodesPage(params, alive); break;
      case 'node': await nodePage(parts[1], alive); break;
      case 'send': await sendPage(alive); break;
      default: await commandsPage(params, alive);
    }
  } catch (e) {
    if (alive() && app.who) showError(e);
  }
}

function page(title, ...content) {
  document.title = title + ' · fleetrun';
  main().replaceChildren(h('h1', {}, title), ...content);
  main().focus({ preventScroll: true });
}

// ------------------------------------------------------------------ Commands

const COMMAND_FILTERS = ['Status', 'ExecutionStage', 'DocumentName', 'InvokedAfter', 'InvokedBefore'];

function toIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return isNaN(d) ? local : d.toISOString().replace(/\.\d+Z$/, 'Z');
}

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function commandRow(c) {
  return h('tr', {},
    h('td', {}, h('a', { href: '#/command/' + encodeURIComponent(c.CommandId), class: 'mono' }, c.CommandId)),
    h('td', {}, c.DocumentName),
    h('td', {}, badge(c.Status)),
    h('td', {}, when(c.RequestedDateTime)),
    h('td', { class: 'num' }, `${c.CompletedCount}/${c.TargetCount}`),
    h('td', { class: 'num' }, c.ErrorCount),
    h('td', {}, c.Comment || ''));
}

async function commandsPage(params, alive) {
  const v = (k) => params.get(k) || '';
  const form = h('form', { class: 'filters', id: 'command-filters', 'aria-label': 'Filter commands' },
    field('Status', select('f-status', [['', 'Any'], ...STATUSES.map((s) => [s, s])], v('Status'))),
    field('Execution stage', select('f-stage', [['', 'Any'], ['Executing', 'Executing'], ['Complete', 'Complete']], v('ExecutionStage'))),
    field('Document', h('input', { id: 'f-document', value: v('DocumentName'), spellcheck: 'false' })),
    field('Invoked after', h('input', { id: 'f-after', type: 'datetime-local', value: toLocalInput(v('InvokedAfter')) })),
    field('Invoked before', h('input', { id: 'f-before', type: 'datetime-local', value: toLocalInput(v('InvokedBefore')) })),
    field('Node ID', h('input', { id: 'f-instance', value: v('InstanceId'), spellcheck: 'false' })),
    field('Command ID', h('input', { id: 'f-command', value: v('CommandId'), spellcheck: 'false' })),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
      h('a', { href: '#/commands', class: 'button' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    const set = (k, val) => { if (val) q.set(k, val.trim()); };
    set('Status', $('#f-status').value);
    set('ExecutionStage', $('#f-stage').value);
    set('DocumentName', $('#f-document').value);
    set('InvokedAfter', toIso($('#f-after').value));
    set('InvokedBefore', toIso($('#f-before').value));
    set('InstanceId', $('#f-instance').value);
    set('CommandId', $('#f-command').value);
    const next = '#/commands' + (q.toString() ? '?' + q : '');
    if (location.hash === next) route(); else location.hash = next;
  });
  const request = { MaxResults: 50 };
  const filters = COMMAND_FILTERS.filter((k) => v(k)).map((k) => ({ key: k, value: v(k) }));
  if (filters.length) request.Filters = filters;
  if (v('InstanceId')) request.InstanceId = v('InstanceId');
  if (v('CommandId')) request.CommandId = v('CommandId');

  const body = h('tbody', {});
  const status = h('p', { class: 'muted', role: 'status', id: 'commands-status' });
  const prev = h('button', { type: 'button', id: 'page-prev', disabled: true }, 'Previous');
  const next = h('button', { type: 'button', id: 'page-next', disabled: true }, 'Next');
  const tokens = [null]; // the token of each page shown so far (keyset paging)
  async function load(i) {
    const page = await ssm('ListCommands', tokens[i] ? { ...request, NextToken: tokens[i] } : request);
    if (!alive()) return;
    const rows = (page.Commands || []).map(commandRow);
    body.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No commands match.'))]));
    tokens.length = i + 1;
    if (page.NextToken) tokens.push(page.NextToken);
    prev.disabled = i === 0;
    next.disabled = !page.NextToken;
    status.textContent = `Page ${i + 1}: ${rows.length} command${rows.length === 1 ? '' : 's'}`;
    current = i;
  }
  let current = 0;
  prev.addEventListener('click', () => load(current - 1).catch(showError));
  next.addEventListener('click', () => load(current + 1).catch(showError));
  page('Commands', form,
    h('table', { id: 'commands' },
      h('thead', {}, h('tr', {}, ['Command ID', 'Document', 'Status', 'Requested (UTC)', 'Done', 'Errors', 'Comment'].map((c) => h('th', { scope: 'col' }, c)))),
      body),
    h('div', { class: 'pager' }, prev, status, next));
  await load(0);
}

// ------------------------------------------------------------------ One command

function definition(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function parametersView(params) {
  const names = Object.keys(params || {});
  if (!names.length) return h('span', { class: 'muted' }, 'none');
  return h('dl', { class: 'params' }, names.map((n) => [h('dt', {}, n), h('dd', {}, h('pre', {}, (params[n] || []).join('\n')))]));
}

function targetsView(c) {
  if (c.Targets && c.Targets.length) {
    return c.Targets.map((t) => `${t.Key} = ${(t.Values || []).join(', ')}`).join('; ');
  }
  return (c.InstanceIds || []).join(', ');
}

/** What the command was sent with, for other nodes: what Run again sends. */
function resendRequest(c, instanceIds) {
  const req = {
    DocumentName: c.DocumentName,
    Parameters: c.Parameters || {},
    InstanceIds: instanceIds,
  };
  const copy = (from, to = from) => { if (c[from]) req[to] = c[from]; };
  copy('DocumentVersion');
  copy('MaxConcurrency');
  copy('MaxErrors');
  copy('TimeoutSeconds');
  copy('Comment');
  copy('OutputS3BucketName');
  copy('OutputS3KeyPrefix');
  copy('OutputS3Region');
  copy('ServiceRole', 'ServiceRoleArn');
  copy('AlarmConfiguration');
  if (c.NotificationConfig && c.NotificationConfig.NotificationArn) req.NotificationConfig = c.NotificationConfig;
  if (c.CloudWatchOutputConfig && c.CloudWatchOutputConfig.CloudWatchOutputEnabled) req.CloudWatchOutputConfig = c.CloudWatchOutputConfig;
  return req;
}

async function commandPage(commandId, alive) {
  const summary = h('div', { id: 'command-summary' });
  const actions = h('div', { class: 'actions', id: 'command-actions' });
  const invBody = h('tbody', {});
  const output = h('section', { id: 'output', 'aria-labelledby': 'output-title' });
  page('Command ' + commandId,
    summary, actions,
    h('h2', {}, 'Invocations'),
    h('table', { id: 'invocations' },
      h('thead', {}, h('tr', {}, ['Node', 'Name', 'Status', 'Details', 'Exit code', 'Output'].map((c) => h('th', { scope: 'col' }, c)))),
      invBody),
    output);

  const rows = new Map(); // instance id → {tr, cells}
  let command = null;
  let invocations = [];
  let selected = null;
  let stopOutput = null;

  function select(instanceId) {
    if (selected === instanceId) return;
    selected = instanceId;
    if (stopOutput) stopOutput();
    for (const [id, r] of rows) r.button.setAttribute('aria-pressed', String(id === instanceId));
    stopOutput = followOutput(commandId, instanceId, output, alive,
      () => (invocations.find((i) => i.InstanceId === instanceId) || {}).Status);
  }

  function renderSummary() {
    const c = command;
    const counts = `${c.CompletedCount} of ${c.TargetCount} done, ${c.ErrorCount} error${c.ErrorCount === 1 ? '' : 's'}` +
      (c.DeliveryTimedOutCount ? `, ${c.DeliveryTimedOutCount} not delivered` : '');
    summary.replaceChildren(definition([
      ['Status', h('span', { id: 'command-status' }, badge(c.Status))],
      ['Details', h('span', { id: 'command-details' }, c.StatusDetails)],
      ['Progress', h('span', { id: 'command-counts' }, counts)],
      ['Document', c.DocumentName + (c.DocumentVersion ? ` (version ${c.DocumentVersion})` : '')],
      ['Parameters', parametersView(c.Parameters)],
      ['Targets', targetsView(c)],
      ['Rate control', `MaxConcurrency ${c.MaxConcurrency || '—'}, MaxErrors ${c.MaxErrors || '—'}`],
      ['Delivery timeout', c.TimeoutSeconds ? `${c.TimeoutSeconds} s` : ''],
      ['Comment', c.Comment],
      ['Requested', when(c.RequestedDateTime) + ' UTC'],
    ]));
  }

  function renderActions() {
    const c = command;
    const buttons = [];
    if (app.who.CanCancelCommand && !FINAL.has(c.Status) && c.Status !== 'Cancelling') {
      buttons.push(h('button', { type: 'button', id: 'cancel', class: 'danger', onclick: cancel }, 'Cancel'));
    }
    if (app.who.CanSendCommand && FINAL.has(c.Status)) {
      const nodes = invocations.map((i) => i.InstanceId);
      const failed = invocations.filter((i) => i.Status !== 'Success').map((i) => i.InstanceId);
      buttons.push(h('button', { type: 'button', id: 'rerun-all', onclick: () => rerun(nodes) }, `Run again on all ${nodes.length} nodes`));
      if (failed.length && failed.length < nodes.length) {
        buttons.push(h('button', { type: 'button', id: 'rerun-failed', class: 'primary', onclick: () => rerun(failed) },
          `Run again on the ${failed.length} node${failed.length === 1 ? '' : 's'} that did not succeed`));
      }
    }
    const key = buttons.map((b) => b.id).join(',');
    if (actions.dataset.key !== key) { // unchanged buttons keep keyboard focus
      actions.dataset.key = key;
      actions.replaceChildren(...buttons);
    }
  }

  async function cancel() {
    try {
      await ssm('CancelCommand', { CommandId: commandId });
      await refresh();
    } catch (e) { showError(e); }
  }

  async function rerun(instanceIds) {
    try {
      const sent = await ssm('SendCommand', resendRequest(command, instanceIds));
      location.hash = '#/command/' + encodeURIComponent(sent.Command.CommandId);
    } catch (e) { showError(e); }
  }

  function renderInvocations() {
    for (const inv of invocations) {
      let r = rows.get(inv.InstanceId);
      if (!r) {
        const cells = [0, 1, 2, 3, 4].map(() => h('td', {}));
        const button = h('button', { type: 'button', class: 'small', 'aria-pressed': 'false',
          'data-instance': inv.InstanceId, onclick: () => select(inv.InstanceId) }, 'Show output');
        cells[0].append(h('a', { href: '#/node/' + encodeURIComponent(inv.InstanceId), class: 'mono' }, inv.InstanceId));
        const tr = h('tr', { 'data-instance': inv.InstanceId }, cells, h('td', {}, button));
        invBody.append(tr);
        r = { tr, cells, button };
        rows.set(inv.InstanceId, r);
      }
      const plugins = inv.CommandPlugins || [];
      const codes = plugins.map((p) => p.ResponseCode).filter((x) => x !== undefined && x !== null && x !== -1);
      r.cells[1].textContent = inv.InstanceName || '';
      r.cells[2].replaceChildren(badge(inv.Status));
      r.cells[3].textContent = inv.StatusDetails || '';
      r.cells[4].textContent = codes.length ? codes.join(', ') : '';
      r.cells[4].className = 'num exit-code';
    }
    if (!selected && invocations.length) select(invocations[0].InstanceId);
  }

  let polls = 0;
  async function refresh(force) {
    // A wide fan-out's invocations (hundreds of pages) are read every fifth poll, and the last
    // one once the command is final; the command's status and counts every time.
    const wide = invocations.length > WIDE_FANOUT;
    const withInvocations = force || !wide || polls++ % 5 === 0;
    const [listed, invs] = await Promise.all([
      ssm('ListCommands', { CommandId: commandId }),
      withInvocations ? all('ListCommandInvocations', { CommandId: commandId, Details: true, MaxResults: 50 }, 'CommandInvocations', 100) : null,
    ]);
    if (!alive()) return;
    if (!listed.Commands || !listed.Commands.length) throw new AwsError('InvalidCommandId', 'No command ' + commandId);
    command = listed.Commands[0];
    if (invs) invocations = invs;
    else if (FINAL.has(command.Status)) return refresh(true);
    renderSummary();
    renderInvocations();
    renderActions();
  }

  await refresh();
  (async () => {
    while (alive() && command && !FINAL.has(command.Status)) {
      await sleep(COMMAND_POLL_MS);
      if (!alive()) return;
      try { await refresh(); } catch (e) { if (alive()) showError(e); return; }
    }
  })();
}

/**
 * Shows one invocation's output: its live output as shipped (GetCommandOutput, followed with its
 * NextToken every OUTPUT_POLL_MS while nothing new arrives), all of it, then what only the report
 * carries (a step too short to be shipped: GetCommandInvocation). Returns a stop function.
 */
function followOutput(commandId, instanceId, section, alive, statusOf) {
  let stopped = false;
  const streams = new Map(); // "step/stream" → {pre, text}
  const holder = h('div', { class: 'streams' });
  const state = h('p', { class: 'muted', role: 'status', id: 'output-state' }, 'Reading output…');
  const download = h('button', { type: 'button', id: 'download-output', onclick: save }, 'Download output');
  section.replaceChildren(h('h2', { id: 'output-title' }, 'Output of ', h('span', { class: 'mono' }, instanceId)),
    h('div', { class: 'actions' }, download), state, holder);

  function streamOf(step, stream) {
    const key = step + '/' + stream;
    let s = streams.get(key);
    if (!s) {
      const pre = h('pre', { class: 'output ' + stream, 'data-stream': stream, tabindex: '0', 'aria-label': `${stream} of ${step}` });
      holder.append(h('h3', {}, `${step} — ${stream}`), pre);
      s = { pre, text: '' };
      streams.set(key, s);
    }
    return s;
  }

  function append(step, stream, content) {
    const s = streamOf(step, stream);
    s.text += content;
    const atEnd = s.pre.scrollTop + s.pre.clientHeight >= s.pre.scrollHeight - 4;
    s.pre.append(document.createTextNode(content));
    if (atEnd) s.pre.scrollTop = s.pre.scrollHeight;
  }

  function save() {
    const text = [...streams.entries()].map(([k, s]) => (streams.size > 1 ? `==> ${k} <==\n` : '') + s.text).join('\n');
    const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
    const a = h('a', { href: url, download: `${commandId}-${instanceId}.txt` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  (async () => {
    let token;
    const live = () => !stopped && alive();
    try {
      for (;;) {
        const page = await call('FleetrunAdmin.GetCommandOutput', { CommandId: commandId, InstanceId: instanceId, NextToken: token });
        if (!live()) return;
        for (const p of page.Output || []) append(p.StepName, p.Stream, p.Content);
        token = page.NextToken;
        if ((page.Output || []).length) { state.textContent = 'Receiving output…'; continue; }
        const mine = statusOf();
        if (FINAL.has(page.CommandStatus) || (mine && !LIVE.has(mine))) break;
        state.textContent = 'Running: output appears as it is printed.';
        await sleep(OUTPUT_POLL_MS);
        if (!live()) return;
      }
      // Steps that ended before anything of them was shipped: their report carries the output.
      if (!streams.size) {
        const inv = await ssm('GetCommandInvocation', { CommandId: commandId, InstanceId: instanceId });
        if (!live()) return;
        if (inv.StandardOutputContent) append(inv.PluginName || 'output', 'stdout', inv.StandardOutputContent);
        if (inv.StandardErrorContent) append(inv.PluginName || 'output', 'stderr', inv.StandardErrorContent);
      }
      state.textContent = streams.size ? 'Complete output.' : 'No output.';
    } catch (e) {
      if (live()) { state.textContent = 'Output unavailable.'; showError(e); }
    }
  })();
  return () => { stopped = true; };
}

// ------------------------------------------------------------------ Nodes

async function nodesPage(params, alive) {
  const key = params.get('tagKey') || '';
  const value = params.get('tagValue') || '';
  const form = h('form', { class: 'filters', id: 'node-filters', 'aria-label': 'Filter nodes by tag' },
    field('Tag key', h('input', { id: 'f-tag-key', value: key, spellcheck: 'false' })),
    field('Tag value', h('input', { id: 'f-tag-value', value, spellcheck: 'false' }), 'Empty: any node with the key.'),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filter'),
      h('a', { href: '#/nodes', class: 'button' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if ($('#f-tag-key').value.trim()) q.set('tagKey', $('#f-tag-key').value.trim());
    if ($('#f-tag-value').value.trim()) q.set('tagValue', $('#f-tag-value').value.trim());
    location.hash = '#/nodes' + (q.toString() ? '?' + q : '');
  });
  const body = h('tbody', {});
  page('Nodes', form,
    h('table', { id: 'nodes' },
      h('thead', {}, h('tr', {}, ['Node', 'Name', 'Ping', 'Platform', 'Agent', 'Last ping (UTC)', 'IP address', 'Tags'].map((c) => h('th', { scope: 'col' }, c)))),
      body));
  const request = { MaxResults: 50 };
  if (key) request.Filters = [value ? { Key: 'tag:' + key, Values: [value] } : { Key: 'tag-key', Values: [key] }];
  const nodes = await all('DescribeInstanceInformation', request, 'InstanceInformationList', 20);
  if (!alive()) return;
  const tagCells = [];
  body.replaceChildren(...(nodes.length ? nodes.map((n) => {
    const tags = h('td', { class: 'tags' });
    tagCells.push([n.InstanceId, tags]);
    return h('tr', { 'data-instance': n.InstanceId },
      h('td', {}, h('a', { href: '#/node/' + encodeURIComponent(n.InstanceId), class: 'mono' }, n.InstanceId)),
      h('td', {}, n.Name || n.ComputerName || ''),
      h('td', {}, badge(n.PingStatus)),
      h('td', {}, [n.PlatformName, n.PlatformVersion].filter(Boolean).join(' ')),
      h('td', {}, n.AgentVersion || ''),
      h('td', {}, when(n.LastPingDateTime)),
      h('td', { class: 'mono' }, n.IPAddress || ''),
      tags);
  }) : [h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No nodes match.'))]));
  await Promise.all(tagCells.map(async ([id, cell]) => {
    try {
      const t = await ssm('ListTagsForResource', { ResourceType: 'ManagedInstance', ResourceId: id });
      cell.replaceChildren(...(t.TagList || []).map((x) => h('span', { class: 'tag' }, `${x.Key}=${x.Value}`)));
    } catch (e) { cell.textContent = e.code || 'unavailable'; }
  }));
}

async function nodePage(instanceId, alive) {
  const info = h('div', {});
  const body = h('tbody', {});
  page('Node ' + instanceId, info, h('h2', {}, 'Recent commands'),
    h('table', { id: 'node-commands' },
      h('thead', {}, h('tr', {}, ['Command ID', 'Document', 'Status', 'Requested (UTC)', 'Done', 'Errors', 'Comment'].map((c) => h('th', { scope: 'col' }, c)))),
      body));
  const [described, listed] = await Promise.all([
    ssm('DescribeInstanceInformation', { Filters: [{ Key: 'InstanceIds', Values: [instanceId] }] }),
    ssm('ListCommands', { InstanceId: instanceId, MaxResults: 25 }),
  ]);
  if (!alive()) return;
  const n = (described.InstanceInformationList || [])[0];
  if (n) {
    info.replaceChildren(definition([
      ['Ping', badge(n.PingStatus)], ['Name', n.Name || n.ComputerName], ['Computer', n.ComputerName],
      ['Platform', [n.PlatformName, n.PlatformVersion].filter(Boolean).join(' ')],
      ['Agent version', n.AgentVersion], ['Last ping', when(n.LastPingDateTime) + ' UTC'],
      ['IP address', n.IPAddress], ['IAM role', n.IamRole], ['Registered', when(n.RegistrationDate) + ' UTC'],
    ]));
  }
  const rows = (listed.Commands || []).map(commandRow);
  body.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No commands yet.'))]));
  info.append(h('p', {}, h('a', { href: '#/commands?' + new URLSearchParams({ InstanceId: instanceId }) }, 'All commands of this node')));
}

// ------------------------------------------------------------------ Send

function parameterControl(p) {
  const id = 'p-' + p.Name;
  const dflt = p.DefaultValue || '';
  const multiline = p.Type === 'StringList' || /command|script/i.test(p.Name);
  const control = multiline
    ? h('textarea', { id, name: p.Name, rows: p.Name === 'commands' ? 6 : 3, spellcheck: 'false', 'data-type': p.Type, 'data-param': p.Name }, dflt)
    : h('input', { id, name: p.Name, value: dflt, spellcheck: 'false', 'data-type': p.Type, 'data-param': p.Name });
  const hint = [p.Description, p.Type === 'StringList' ? 'One value per line.' : ''].filter(Boolean).join(' ');
  return field(p.Name + (p.Type ? ` (${p.Type})` : ''), control, hint);
}

async function sendPage(alive) {
  if (!app.who.CanSendCommand) {
    page('Send a command', h('p', {}, 'This access key may not send commands.'));
    return;
  }
  const [documents, nodes] = await Promise.all([
    all('ListDocuments', { Filters: [{ Key: 'DocumentType', Values: ['Command'] }], MaxResults: 50 }, 'DocumentIdentifiers', 20),
    all('DescribeInstanceInformation', { MaxResults: 50 }, 'InstanceInformationList', 20),
  ]);
  if (!alive()) return;
  const names = documents.map((d) => d.Name).sort();
  const docSelect = select('s-document', names.map((n) => [n, n]), names.includes('AWS-RunShellScript') ? 'AWS-RunShellScript' : names[0]);
  const paramBox = h('fieldset', { id: 's-parameters' }, h('legend', {}, 'Parameters'));
  const nodeList = h('fieldset', { class: 'checks', id: 's-nodes' }, h('legend', {}, 'Nodes'), nodes.map((n) => {
    const id = 'n-' + n.InstanceId;
    return h('div', {}, h('input', { type: 'checkbox', id, value: n.InstanceId, name: 'node' }),
      h('label', { for: id }, h('span', { class: 'mono' }, n.InstanceId), ' ', n.Name || n.ComputerName || '', ' ', badge(n.PingStatus)));
  }));
  const byIds = h('input', { type: 'radio', name: 'target', id: 's-by-ids', value: 'ids', checked: true });
  const byTag = h('input', { type: 'radio', name: 'target', id: 's-by-tag', value: 'tag' });
  const form = h('form', { id: 'send-form', class: 'card' },
    field('Document', docSelect),
    paramBox,
    h('fieldset', {}, h('legend', {}, 'Targets'),
      h('fieldset', { class: 'radios' }, h('legend', {}, 'Target by'), byIds, h('label', { for: 's-by-ids' }, 'Nodes'), byTag, h('label', { for: 's-by-tag' }, 'Tag')),
      nodeList,
      field('More node IDs', h('input', { id: 's-instance-ids', spellcheck: 'false' }), 'Separated by spaces or commas.'),
      h('div', { class: 'row' },
        field('Tag key', h('input', { id: 's-tag-key', spellcheck: 'false' })),
        field('Tag values', h('input', { id: 's-tag-values', spellcheck: 'false' }), 'Separated by commas.'))),
    h('fieldset', {}, h('legend', {}, 'Rate control and timeouts'),
      h('div', { class: 'row' },
        field('Max concurrency', h('input', { id: 's-max-concurrency', value: '50' }), 'A number or a percentage.'),
        field('Max errors', h('input', { id: 's-max-errors', value: '0' }), 'A number or a percentage.'),
        field('Delivery timeout (seconds)', h('input', { id: 's-timeout', type: 'number', min: 30, max: 2592000, value: 3600 })))),
    field('Comment', h('input', { id: 's-comment', maxlength: 100 })),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 's-submit' }, 'Send command')));

  async function loadParameters() {
    paramBox.replaceChildren(h('legend', {}, 'Parameters'));
    const d = await ssm('DescribeDocument', { Name: docSelect.value });
    if (!alive()) return;
    const params = d.Document.Parameters || [];
    paramBox.append(...(params.length ? params.map(parameterControl) : [h('p', { class: 'muted' }, 'This document takes no parameters.')]));
  }
  docSelect.addEventListener('change', () => loadParameters().catch(showError));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(null);
    const parameters = {};
    for (const el of paramBox.querySelectorAll('[data-param]')) {
      const raw = el.value;
      if (!raw.trim()) continue;
      parameters[el.dataset.param] = el.dataset.type === 'StringList'
        ? raw.split('\n').filter((l) => l.trim() !== '') : [raw];
    }
    const req = {
      DocumentName: docSelect.value,
      Parameters: parameters,
      MaxConcurrency: $('#s-max-concurrency').value.trim() || undefined,
      MaxErrors: $('#s-max-errors').value.trim() || undefined,
      TimeoutSeconds: Number($('#s-timeout').value) || undefined,
      Comment: $('#s-comment').value.trim() || undefined,
    };
    if (byTag.checked) {
      const k = $('#s-tag-key').value.trim();
      req.Targets = [{ Key: k.startsWith('tag:') || k === 'InstanceIds' ? k : 'tag:' + k,
        Values: $('#s-tag-values').value.split(',').map((x) => x.trim()).filter(Boolean) }];
    } else {
      const ids = [...nodeList.querySelectorAll('input:checked')].map((c) => c.value)
        .concat($('#s-instance-ids').value.split(/[\s,]+/).filter(Boolean));
      req.InstanceIds = [...new Set(ids)];
    }
    try {
      const sent = await ssm('SendCommand', req);
      location.hash = '#/command/' + encodeURIComponent(sent.Command.CommandId);
    } catch (e) { showError(e); }
  });
  page('Send a command', form);
  await loadParameters();
}

// ------------------------------------------------------------------ start

async function start() {
  $('#sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  try {
    const r = await fetch('/console/api/whoami', { credentials: 'same-origin' });
    if (r.ok) {
      app.who = await r.json();
      signedIn();
      return;
    }
  } catch (_) { /* shown as the sign-in page */ }
  signedOut();
}

document.addEventListener('DOMContentLoaded', start);
