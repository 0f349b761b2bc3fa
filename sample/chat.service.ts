import { Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { Subscription } from 'rxjs';
import { MsgTransSessions } from '../lib/index.js';

/**
 * Chat rooms on top of server push: who is called what, and announcing
 * joins and departures (including a dropped connection) to the room.
 */
@Injectable()
export class ChatService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(ChatService.name);
  private readonly names = new Map<string, string>();
  private subscription: Subscription | undefined;

  constructor(private readonly sessions: MsgTransSessions) {}

  onModuleInit(): void {
    // presence: when a session goes away, its rooms hear about it
    this.subscription = this.sessions.closed$.subscribe(({ session, rooms }) => {
      const name = this.names.get(session.id);
      this.names.delete(session.id);
      for (const room of rooms) this.announce(room, `${name ?? 'someone'} left`);
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  join(sessionId: string, room: string, name: string): number {
    this.names.set(sessionId, name);
    this.sessions.join(sessionId, room);
    this.announce(room, `${name} joined`, sessionId);
    this.logger.log(`${name} joined ${room}`);
    return this.sessions.members(room).length;
  }

  say(sessionId: string, room: string, text: string): number {
    return this.sessions.emitToRoom(room, 'chat.message', { room, from: this.names.get(sessionId) ?? 'anonymous', text }, { except: sessionId });
  }

  leave(sessionId: string, room: string): void {
    this.sessions.leave(sessionId, room);
    this.announce(room, `${this.names.get(sessionId) ?? 'someone'} left`);
  }

  private announce(room: string, text: string, except?: string): void {
    this.sessions.emitToRoom(room, 'chat.message', { room, from: 'server', text }, { except });
  }
}
