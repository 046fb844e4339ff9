import { useState } from 'preact/hooks';
import { useApi } from '../lib/hooks.js';
import { age, until, version } from '../lib/format.js';
import { Problem } from './Problem.jsx';

const STATUSES = ['enforcing', 'degraded', 'stale', 'revoked'];
const PAGE = 100;

export function Fleet() {
  const { data, error } = useApi('fleet');
  const [status, setStatus] = useState('');
  const [page, setPage] = useState(0);
  if (error) return <Problem error={error} />;
  const nodes = data ? data.nodes.filter((n) => !status || n.status === status) : [];
  const shown = nodes.slice(page * PAGE, (page + 1) * PAGE);
  return (
    <section>
      <h1>Fleet posture</h1>
      {!data && <p class="muted">Loading…</p>}
      {data && (
        <div class="regions" data-testid="regions">
          {Object.entries(data.regions).map(([region, counts]) => (
            <div class="region" data-testid={`region-${region}`}>
              <h2>{region}</h2>
              {STATUSES.filter((s) => counts[s]).map((s) => (
                <span class={`pill ${s}`}>
                  {counts[s]} {s}
                </span>
              ))}
            </div>
          ))}
        </div>
      )}
      {data && (
        <>
          <p>
            Show{' '}
            <select value={status} onChange={(e) => (setStatus(e.target.value), setPage(0))} data-testid="status-filter">
              <option value="">every node ({data.nodes.length})</option>
              {STATUSES.map((s) => (
                <option value={s}>{s}</option>
              ))}
            </select>
          </p>
          <table data-testid="nodes">
            <thead>
              <tr>
                <th>Node</th><th>Region</th><th>Status</th><th>Policy</th><th>Bundle</th>
                <th>Cert expires</th><th>Geo DB</th><th>Last seen</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((n) => (
                <tr data-node={n.node_id}>
                  <td><a href={`#/node/${encodeURIComponent(n.node_id)}`}>{n.hostname || n.node_id}</a> <span class="muted mono">{n.node_id}</span></td>
                  <td>{n.region}</td>
                  <td><span class={`pill ${n.status}`} title={n.reason || ''}>{n.status}</span></td>
                  <td>{version(n.applied_policy_version)}{n.expected_policy_version !== n.applied_policy_version && n.expected_policy_version != null ? ` (want ${version(n.expected_policy_version)})` : ''}</td>
                  <td>{version(n.applied_bundle_version)}</td>
                  <td>{until(n.cert_not_after_ms)}</td>
                  <td>{n.geo_db_version || '—'}</td>
                  <td>{age(n.last_seen_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {nodes.length > PAGE && (
            <p class="pager">
              <button disabled={page === 0} onClick={() => setPage(page - 1)}>Previous</button>
              {' '}{page * PAGE + 1}–{Math.min(nodes.length, (page + 1) * PAGE)} of {nodes.length}{' '}
              <button disabled={(page + 1) * PAGE >= nodes.length} onClick={() => setPage(page + 1)}>Next</button>
            </p>
          )}
        </>
      )}
    </section>
  );
}
