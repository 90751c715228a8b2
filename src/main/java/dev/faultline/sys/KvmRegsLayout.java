package dev.faultline.sys;

/**
 * {@code struct kvm_regs} (x86-64), 18 u64 in this order (NOT the x86 encoding order):
 *
 * <pre>
 *   0 rax    8 rbx   16 rcx   24 rdx   32 rsi   40 rdi   48 rsp   56 rbp
 *  64 r8    72 r9    80 r10   88 r11   96 r12  104 r13  112 r14  120 r15
 * 128 rip  136 rflags                                            = 144 bytes
 * </pre>
 */
public final class KvmRegsLayout {
    private KvmRegsLayout() {}

    public static final long RAX = 0, RBX = 8, RCX = 16, RDX = 24, RSI = 32, RDI = 40, RSP = 48, RBP = 56,
            R8 = 64, R9 = 72, R10 = 80, R11 = 88, R12 = 96, R13 = 104, R14 = 112, R15 = 120, RIP = 128, RFLAGS = 136;
    public static final long SIZE = 144;

    /**
     * Offset in kvm_regs of the general register with x86 encoding number {@code reg}
     * (RAX=0 RCX=1 RDX=2 RBX=3 RSP=4 RBP=5 RSI=6 RDI=7 R8..R15=8..15).
     */
    public static long offsetOfEncoding(int reg) {
        return GPR_OFFSET_BY_ENCODING[reg];
    }

    private static final long[] GPR_OFFSET_BY_ENCODING = {RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
            R8, R9, R10, R11, R12, R13, R14, R15};
}
