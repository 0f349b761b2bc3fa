// The sample, tests, bench and scripts take the library's helper; this path stays so their imports need not change.
export { createDevCertificates, type DevCertificates } from '../lib/index.js';
