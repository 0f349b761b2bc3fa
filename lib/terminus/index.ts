// `nestjs-msgtrans/terminus`: needs @nestjs/terminus (an optional peer dependency); the main entry never loads it.
export * from './msgtrans-health-indicator.js';
