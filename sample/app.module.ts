import { Module, type DynamicModule } from '@nestjs/common';
import { MsgTransModule, type MsgTransServerOptions } from '../lib/index.js';
import { ChatController } from './chat.controller.js';
import { ChatService } from './chat.service.js';
import { MathController } from './math.controller.js';

/** The sample service: math, a streamed count, an audit event and chat rooms, on every configured endpoint. */
@Module({})
export class AppModule {
  static forRoot(server: MsgTransServerOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [MsgTransModule.forRoot({ server })],
      controllers: [MathController, ChatController],
      providers: [ChatService],
    };
  }
}
