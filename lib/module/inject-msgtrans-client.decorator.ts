import { Inject } from '@nestjs/common';

/** Injects the client registered under `name` by `MsgTransModule`. Same as `@Inject(name)`. */
export const InjectMsgTransClient = (name: string | symbol): ParameterDecorator & PropertyDecorator => Inject(name);
