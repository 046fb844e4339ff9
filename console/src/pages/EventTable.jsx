import { time } from '../lib/format.js';

// Events as a table; `onAck(event)` adds an acknowledge button to unacknowledged ones.
export function EventTable({ events, onAck, testid }) {
  if (!events.length) return <p class="muted">No events.</p>;
  return (
    <table data-testid={testid}>
      <thead>
        <tr>
          <th>Received</th><th>Node</th><th>Region</th><th>Kind</th><th>Severity</th><th>Summary</th><th>Workload</th><th>Handled</th>
        </tr>
      </thead>
      <tbody>
        {events.map((e) => (
          <tr data-kind={e.kind} data-event={e.id}>
            <td>{time(e.received_ms)}</td>
            <td><a href={`#/node/${encodeURIComponent(e.node_id)}`}>{e.node_id}</a></td>
            <td>{e.region || '—'}</td>
            <td>{e.kind}</td>
            <td><span class={`pill ${e.severity}`}>{e.severity}</span></td>
            <td class="summary">{e.summary}</td>
            <td>{(e.details && e.details.workload) || '—'}</td>
            <td>
              {e.acked_by ? `acknowledged by ${e.acked_by}` : onAck ? (
                <button onClick={() => onAck(e)} data-testid="ack">Acknowledge</button>
              ) : '—'}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
