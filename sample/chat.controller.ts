import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import type { MsgTransContext } from '../lib/index.js';
import { ChatService } from './chat.service.js';

/** Join, talk, leave: requests in, pushes out to the room. */
@Controller()
export class ChatController {
  constructor(private readonly chat: ChatService) {}

  @MessagePattern('chat.join')
  join(@Payload() { room, name }: { room: string; name: string }, @Ctx() ctx: MsgTransContext) {
    return { room, members: this.chat.join(ctx.getSessionId(), room, name) };
  }

  @MessagePattern('chat.say')
  say(@Payload() { room, text }: { room: string; text: string }, @Ctx() ctx: MsgTransContext) {
    return { delivered: this.chat.say(ctx.getSessionId(), room, text) };
  }

  @MessagePattern('chat.leave')
  leave(@Payload() { room }: { room: string }, @Ctx() ctx: MsgTransContext) {
    this.chat.leave(ctx.getSessionId(), room);
    return { left: room };
  }
}
