package dev.faultline.hv;

import java.util.Arrays;

/**
 * General-purpose registers, RIP and RFLAGS of one vCPU. Mutable so that a run loop can reuse one
 * instance ({@link Vcpu#getRegs(Regs)}); {@link #copy()} when a value must be kept.
 *
 * <p>{@link #gpr} is indexed by the x86 register number (the ModRM/REX encoding), not by kvm_regs
 * order: RAX=0 RCX=1 RDX=2 RBX=3 RSP=4 RBP=5 RSI=6 RDI=7 R8..R15=8..15.
 */
public final class Regs {
    public static final int RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7,
            R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;
    /** Names in x86 encoding order. */
    public static final String[] NAMES = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
    /** Names in the order reports print them (kvm_regs order). */
    public static final String[] REPORT_ORDER = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"};

    /** RFLAGS bit 1 is always set. */
    public static final long RFLAGS_FIXED = 0x2;

    public final long[] gpr = new long[16];
    public long rip;
    public long rflags = RFLAGS_FIXED;

    public long get(int reg) { return gpr[reg]; }
    public Regs set(int reg, long value) { gpr[reg] = value; return this; }
    public long rax() { return gpr[RAX]; }
    public long rsp() { return gpr[RSP]; }
    public Regs rip(long v) { rip = v; return this; }

    /** Value by report name ("rax", "r15", "rip", "rflags"). */
    public long byName(String name) {
        if (name.equals("rip")) return rip;
        if (name.equals("rflags")) return rflags;
        for (int i = 0; i < NAMES.length; i++) if (NAMES[i].equals(name)) return gpr[i];
        throw new IllegalArgumentException("no register named " + name);
    }

    public Regs copy() {
        Regs r = new Regs();
        copyTo(r);
        return r;
    }

    public void copyTo(Regs r) {
        System.arraycopy(gpr, 0, r.gpr, 0, 16);
        r.rip = rip;
        r.rflags = rflags;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Regs r && Arrays.equals(gpr, r.gpr) && rip == r.rip && rflags == r.rflags;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(gpr) * 31 + Long.hashCode(rip) * 17 + Long.hashCode(rflags);
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        for (String n : REPORT_ORDER) sb.append(n).append("=0x").append(Long.toHexString(byName(n))).append(' ');
        return sb.toString().trim();
    }
}
