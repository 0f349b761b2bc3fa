import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { INestMicroservice } from '@nestjs/common';
import { MsgTransModule, MsgTransServer } from '../lib/index.js';
import { AppModule } from './app.module.js';
import type { DevCertificates } from '../lib/index.js';

/** Starts the sample microservice on the given endpoints, with the server built by MsgTransModule. */
export async function startServer(
  listen: string[],
  certs: DevCertificates,
): Promise<{ app: INestMicroservice; server: MsgTransServer }> {
  const app = await NestFactory.createMicroservice(
    AppModule.forRoot({ listen, tls: { key: certs.serverKey, cert: certs.serverCert } }),
    MsgTransModule.microservice(),
  );
  app.enableShutdownHooks();
  await app.listen();
  return { app, server: app.get(MsgTransServer) };
}
