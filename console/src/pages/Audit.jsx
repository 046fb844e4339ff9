import { useState } from 'preact/hooks';
import { useApi } from '../lib/hooks.js';
import { query } from '../lib/api.js';
import { time } from '../lib/format.js';
import { Problem } from './Problem.jsx';

function Status() {
  const { data, error } = useApi('audit/status');
  if (error) return <Problem error={error} />;
  if (!data) return <p class="muted" data-testid="chain">Verifying the chain…</p>;
  const v = data.verification;
  const c = data.checkpoint;
  return (
    <dl class="facts">
      <dt>Chain</dt>
      <dd data-testid="chain" class={v.ok ? 'ok' : 'error'}>
        {v.ok ? `intact: ${v.records} records verified` : `BROKEN at record ${v.first_bad_seq}: ${v.error}`}
      </dd>
      <dt>Latest checkpoint</dt>
      <dd data-testid="checkpoint">
        {c ? `record ${c.seq}, signed ${time(c.time_ms)} (${c.reason}, key ${c.key_id}); ${data.checkpoint_matches ? 'matches the log' : 'DOES NOT MATCH the log'}` : 'none signed yet'}
      </dd>
    </dl>
  );
}

export function Audit() {
  const [before, setBefore] = useState([]);
  const { data, error } = useApi(`audit${query({ before: before[before.length - 1], limit: 50 })}`);
  const records = data ? data.records : [];
  return (
    <section>
      <h1>Audit log</h1>
      <Status />
      {error && <Problem error={error} />}
      {data && (
        <table data-testid="audit">
          <thead><tr><th>Seq</th><th>Time</th><th>Actor</th><th>Action</th><th>Details</th></tr></thead>
          <tbody>
            {records.map((r) => (
              <tr data-action={r.action}>
                <td>{r.seq}</td><td>{time(r.time_ms)}</td><td>{r.actor}</td><td>{r.action}</td>
                <td class="details">{JSON.stringify(r.details).slice(0, 300)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="pager">
        <button disabled={!before.length} onClick={() => setBefore(before.slice(0, -1))}>Newer</button>{' '}
        <button disabled={!records.length || records[records.length - 1].seq <= 1} onClick={() => setBefore([...before, records[records.length - 1].seq])}>Older</button>
        {data && ` ${data.head_seq} records in all`}
      </p>
    </section>
  );
}
