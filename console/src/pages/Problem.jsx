export function Problem({ error }) {
  return (
    <p class="error" role="alert">
      {error.status ? `${error.status}: ` : ''}
      {error.message}
    </p>
  );
}
