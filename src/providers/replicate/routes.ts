/**
 * Replicate's URL layout, for labels: a request path with its ids taken out
 * (`/v1/predictions/abc/cancel` → `/predictions/:id/cancel`), so metrics keep few label values.
 */
export function replicateRoute(path: string): string {
  const p = path.split('?')[0]!.replace(/^\/v1/, '');
  if (/^\/models\/[^/]+\/[^/]+\/predictions$/.test(p)) return '/models/:owner/:name/predictions';
  if (/^\/predictions\/[^/]+\/cancel$/.test(p)) return '/predictions/:id/cancel';
  if (/^\/predictions\/[^/]+$/.test(p)) return '/predictions/:id';
  if (p === '/predictions') return '/predictions';
  if (/^\/webhooks\//.test(p)) return '/webhooks/default/secret';
  if (/\/stream/.test(p) || /^\/files\//.test(p)) return '/stream';
  return 'other';
}
