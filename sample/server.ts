import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { INestMicroservice } from '@nestjs/common';
import { MsgTransServer } from '../lib/index.js';
import { AppModule } from './app.module.js';

/** Starts the sample microservice on the given endpoints. */
export async function startServer(listen: string[]): Promise<{ app: INestMicroservice; server: MsgTransServer }> {
  const server = new MsgTransServer({ listen });
  const app = await NestFactory.createMicroservice(AppModule, { strategy: server });
  app.enableShutdownHooks();
  await app.listen();
  return { app, server };
}
