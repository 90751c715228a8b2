package dev.faultline.conform;

import dev.faultline.guest.asm.Assembler;
import java.util.function.Consumer;

/**
 * One self-contained step of a generated program: it needs nothing from the steps before it beyond
 * the invariants every program keeps (RSP is the stack, R15 points at the data area), so any subset
 * of a program's steps is still a valid program. That is what makes shrinking possible.
 */
record Op(String text, Consumer<Assembler> emit) {
    @Override
    public String toString() {
        return text;
    }
}
