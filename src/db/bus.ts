/** What crosses processes about task events: which events to read, not the events (they can be large). */
export type EventRef = [taskId: string, userId: string, fromSeq: number, toSeq: number];
