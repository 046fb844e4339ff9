import { useState } from 'preact/hooks';
import { useApi } from '../lib/hooks.js';
import { get, post, query } from '../lib/api.js';
import { time } from '../lib/format.js';
import { Problem } from './Problem.jsx';

function selectorText(s) {
  const parts = [];
  if (s.region) parts.push(`region=${s.region}`);
  for (const [k, v] of Object.entries(s.labels || {})) parts.push(`${k}=${v}`);
  return parts.join(',') || 'every node';
}

function Diff({ text }) {
  if (!text) return <p class="muted">The two versions are identical.</p>;
  return (
    <pre class="diff" data-testid="diff">
      {text.split('\n').map((line) => (
        <span class={line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : ''}>{line}{'\n'}</span>
      ))}
    </pre>
  );
}

export function Policies({ user }) {
  const { data, error, reload } = useApi('policies');
  const [diff, setDiff] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const [message, setMessage] = useState(null);
  const [yaml, setYaml] = useState('');
  const [selector, setSelector] = useState('');
  const canWrite = user.role !== 'viewer';
  if (error) return <Problem error={error} />;
  if (!data) return <section><h1>Policies</h1><p class="muted">Loading…</p></section>;
  const versions = data.history.map((p) => p.version);
  const showDiff = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      setDiff(await get(`policies/diff${query({ from: f.get('from'), to: f.get('to') })}`));
    } catch (err) {
      setMessage({ error: err.message });
    }
  };
  const act = async (what, call) => {
    try {
      const r = await call();
      setMessage({ ok: `${what}: version ${r.policy.version}, ${r.nodes.length} node(s) selected` });
      reload();
    } catch (err) {
      setMessage({ error: `${what} refused: ${err.message}` });
    }
  };
  const rollback = () => {
    const v = confirm;
    setConfirm(null);
    act(`Rolled back to v${v}`, () => post('policies/rollback', { version: v }));
  };
  const apply = (e) => {
    e.preventDefault();
    const labels = {};
    let region = null;
    for (const item of selector.split(',').map((s) => s.trim()).filter(Boolean)) {
      const [k, v] = item.split('=');
      if (k === 'region') region = v;
      else labels[k] = v;
    }
    act('Applied', () => post('policies/apply', { policy_yaml: yaml, selector: { region, labels } }));
  };
  const newest = [...data.history].reverse();
  return (
    <section>
      <h1>Policies</h1>
      {message && <p class={message.error ? 'error' : 'ok'} role="status" data-testid="policy-message">{message.error || message.ok}</p>}
      {confirm != null && (
        <div class="confirm" role="dialog" data-testid="confirm">
          <p>Roll back to version {confirm}? It is stored as a new version and sent to every node its selector picks.</p>
          <button onClick={rollback} data-testid="confirm-yes">Roll back</button>{' '}
          <button onClick={() => setConfirm(null)}>Cancel</button>
        </div>
      )}
      <table data-testid="policy-history">
        <thead>
          <tr><th>Version</th><th>Name</th><th>Selector</th><th>Applied by</th><th>When</th><th>Comment</th><th>Nodes</th><th></th></tr>
        </thead>
        <tbody>
          {newest.map((p) => (
            <tr data-version={p.version}>
              <td>v{p.version}{data.in_force.includes(p.version) ? ' (in force)' : ''}</td>
              <td>{p.name}</td>
              <td>{selectorText(p.selector)}</td>
              <td>{p.author}</td>
              <td>{time(p.created_ms)}</td>
              <td>{p.comment || ''}</td>
              <td>{data.applied_on[p.version] || 0}</td>
              <td>
                <button disabled={!canWrite} title={canWrite ? '' : 'viewers cannot roll back'} onClick={() => setConfirm(p.version)} data-testid={`rollback-${p.version}`}>
                  Roll back to this
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {versions.length > 1 && (
        <form class="inline" onSubmit={showDiff} data-testid="diff-form">
          <h2>Compare</h2>
          <select name="from">{versions.map((v) => <option value={v} selected={v === versions[versions.length - 2]}>v{v}</option>)}</select>
          {' → '}
          <select name="to">{versions.map((v) => <option value={v} selected={v === versions[versions.length - 1]}>v{v}</option>)}</select>
          {' '}<button type="submit">Diff</button>
        </form>
      )}
      {diff && <Diff text={diff.diff} />}
      <h2>Apply a policy</h2>
      {!canWrite && <p class="muted" data-testid="viewer-note">Your account is a viewer: it cannot apply policies.</p>}
      <form onSubmit={apply} data-testid="apply-form">
        <label>Selector <input value={selector} onInput={(e) => setSelector(e.target.value)} placeholder="region=eu,gpu=h100 (empty: every node)" disabled={!canWrite} /></label>
        <textarea rows="10" value={yaml} onInput={(e) => setYaml(e.target.value)} placeholder="apiVersion: ringfence.dev/v1 …" disabled={!canWrite} data-testid="apply-yaml" />
        <button type="submit" disabled={!canWrite} data-testid="apply">Apply</button>
      </form>
    </section>
  );
}
