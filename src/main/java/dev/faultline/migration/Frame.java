package dev.faultline.migration;

import java.nio.ByteBuffer;

/**
 * One received message: its type, sequence number and payload (a view of the reader's buffer,
 * valid until the next read on that connection).
 */
public record Frame(int type, long seq, ByteBuffer payload) {
    public String describe() {
        return Protocol.typeName(type) + " #" + seq;
    }
}
