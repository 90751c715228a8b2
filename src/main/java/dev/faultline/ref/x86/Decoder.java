package dev.faultline.ref.x86;

import static dev.faultline.ref.x86.CpuState.NONE;

/**
 * Decodes one x86-64 instruction (64-bit mode) into an {@link Insn}. Total over every byte string:
 * whatever the bytes, the result is a supported operation, {@link Op#EXCEPTION} (#UD for opcodes that
 * are invalid in 64-bit mode, #GP for an instruction longer than 15 bytes) or {@link Op#UNSUPPORTED}
 * (valid x86 outside the subset), never a Java exception; only "the bytes ran out" is signalled, by
 * returning {@link #NEED_MORE}, so that the caller can fetch the rest from the next page.
 *
 * <p>Not thread-safe (scratch state); one decoder per vCPU.
 */
public final class Decoder {
    public static final int OK = 0, NEED_MORE = 1;
    public static final int MAX_LEN = 15;

    private static final class OutOfBytes extends RuntimeException {
        private static final long serialVersionUID = 1L;
        OutOfBytes() { super(null, null, false, false); }
    }
    private static final OutOfBytes OUT_OF_BYTES = new OutOfBytes();

    private byte[] buf;
    private int avail, pos;
    private int rex;
    private boolean opsize16, addr32;
    private int lastRep;  // 0, 0xf2 or 0xf3: the last of them (selects mandatory-prefix forms)

    /**
     * Decodes the instruction at {@code buf[0]}; {@code avail} bytes are valid.
     * @return {@link #OK} or {@link #NEED_MORE} when the instruction needs bytes past {@code avail}
     */
    public int decode(byte[] buf, int avail, Insn in) {
        this.buf = buf;
        this.avail = Math.min(avail, MAX_LEN + 1);
        in.reset();
        try {
            decode(in);
            if (in.len > MAX_LEN) exception(in, Op.GP);
        } catch (OutOfBytes e) {
            if (avail < MAX_LEN) return NEED_MORE;
            exception(in, Op.GP);  // ran past 15 bytes: too long
            in.len = MAX_LEN;
        }
        if (in.op == Op.UNSUPPORTED || in.op == Op.EXCEPTION) {
            int n = Math.min(Math.max(in.len, Math.min(avail, MAX_LEN)), MAX_LEN);
            in.bytes = java.util.Arrays.copyOf(buf, n);
        }
        return OK;
    }

    private int next() {
        if (pos >= avail) throw OUT_OF_BYTES;
        return buf[pos++] & 0xff;
    }

    private long imm(int size) {
        return switch (size) {
            case 1 -> (byte) next();
            case 2 -> (short) (next() | next() << 8);
            case 4 -> next() | next() << 8 | next() << 16 | (long) next() << 24 << 32 >> 32;
            default -> {
                long lo = (next() | next() << 8 | next() << 16 | (long) next() << 24) & 0xffffffffL;
                long hi = (next() | next() << 8 | next() << 16 | (long) next() << 24) & 0xffffffffL;
                yield lo | hi << 32;
            }
        };
    }

    /** Iz: 16 or 32 bits, sign-extended. */
    private long immZ(int size) { return imm(size == 2 ? 2 : 4); }

    private int byteReg(int n) { return rex == 0 && n >= 4 && n < 8 ? 20 + n - 4 : n; }

    private int vsize() { return (rex & 8) != 0 ? 8 : opsize16 ? 2 : 4; }

    /** Default-64 operand size (push, pop, near branches through memory). */
    private int size64() { return opsize16 ? 2 : 8; }

    private static void unsupported(Insn in, String why) { in.op = Op.UNSUPPORTED; in.why = why; }

    private static void exception(Insn in, int vector) { in.op = Op.EXCEPTION; in.imm = vector; }

    /** Parses ModRM (and SIB, displacement). {@code regByte}/{@code rmByte}: those operands are byte registers. */
    private void modrm(Insn in, boolean regByte, boolean rmByte) {
        int m = next();
        int mod = m >> 6, reg = ((m >> 3) & 7) | ((rex & 4) << 1), rm = m & 7;
        in.reg = regByte ? byteReg(reg) : reg;
        if (mod == 3) {
            int r = rm | ((rex & 1) << 3);
            in.rm = rmByte ? byteReg(r) : r;
            return;
        }
        in.mem = true;
        in.addr32 = addr32;
        if (rm == 4) {
            int sib = next();
            in.scale = sib >> 6;
            int idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
            in.index = idx == 4 ? NONE : idx;
            int b = (sib & 7) | ((rex & 1) << 3);
            if ((b & 7) == 5 && mod == 0) {
                in.base = NONE;
                in.disp = imm(4);
            } else {
                in.base = b;
            }
        } else if (rm == 5 && mod == 0) {
            in.ripRel = true;
            in.disp = imm(4);
        } else {
            in.base = rm | ((rex & 1) << 3);
        }
        if (mod == 1) in.disp = imm(1);
        else if (mod == 2) in.disp = imm(4);
    }

    /** The reg field of a ModRM byte without consuming it (group opcodes). */
    private int peekRegField() {
        if (pos >= avail) throw OUT_OF_BYTES;
        return (buf[pos] >> 3) & 7;
    }

    private void decode(Insn in) {
        pos = 0; rex = 0; opsize16 = false; addr32 = false; lastRep = 0;
        int b;
        for (;;) {
            b = next();
            if (b >= 0x40 && b <= 0x4f) { rex = b; continue; }
            boolean prefix = true;
            switch (b) {
                case 0x66 -> opsize16 = true;
                case 0x67 -> addr32 = true;
                case 0xf0 -> in.lock = true;
                case 0xf2 -> { in.repne = true; lastRep = 0xf2; }
                case 0xf3 -> { in.rep = true; lastRep = 0xf3; }
                case 0x2e, 0x36, 0x3e, 0x26 -> { }
                case 0x64 -> in.seg = 4;
                case 0x65 -> in.seg = 5;
                default -> prefix = false;
            }
            if (!prefix) break;
            rex = 0;  // a REX prefix followed by a legacy prefix is ignored
        }
        if (b == 0x0f) twoByte(in, next());
        else oneByte(in, b);
        in.len = pos;
        checkLock(in);
    }

    private void checkLock(Insn in) {
        if (!in.lock || in.op == Op.EXCEPTION || in.op == Op.UNSUPPORTED) return;
        boolean lockable = switch (in.op) {
            case Op.ALU_MR, Op.ALU_MI -> in.sub != Op.SUB_CMP;
            case Op.INC_DEC, Op.NOT, Op.NEG, Op.XCHG, Op.CMPXCHG, Op.XADD -> in.mem;
            case Op.BT -> in.mem && in.sub != 0;
            default -> false;
        };
        if (!lockable) exception(in, Op.UD);
    }

    private void oneByte(Insn in, int b) {
        if (b < 0x40) {
            int kind = b >> 3, form = b & 7;
            if (form >= 6 || b == 0x0f) { exception(in, Op.UD); return; }  // push/pop seg, daa... invalid in 64-bit
            in.sub = kind;
            switch (form) {
                case 0, 1 -> {
                    in.size = form == 0 ? 1 : vsize();
                    modrm(in, form == 0, form == 0);
                    in.op = in.mem ? Op.ALU_MR : Op.ALU_RR;
                }
                case 2, 3 -> {
                    in.size = form == 2 ? 1 : vsize();
                    modrm(in, form == 2, form == 2);
                    if (in.mem) in.op = Op.ALU_RM;
                    else { int t = in.rm; in.rm = in.reg; in.reg = t; in.op = Op.ALU_RR; }
                }
                default -> {
                    in.size = form == 4 ? 1 : vsize();
                    in.imm = (form == 4 ? imm(1) : immZ(in.size)) & CpuState.mask(in.size);
                    in.rm = 0;
                    in.op = Op.ALU_RI;
                }
            }
            return;
        }
        switch (b) {
            case 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57 -> {
                in.op = Op.PUSH_R; in.size = size64(); in.reg = (b & 7) | ((rex & 1) << 3);
            }
            case 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f -> {
                in.op = Op.POP_R; in.size = size64(); in.reg = (b & 7) | ((rex & 1) << 3);
            }
            case 0x60, 0x61, 0x62, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea -> exception(in, Op.UD);
            case 0x63 -> {
                in.size = vsize();
                in.size2 = Math.min(4, in.size);
                modrm(in, false, false);
                in.op = Op.MOVSX;
            }
            case 0x68 -> { in.op = Op.PUSH_I; in.size = size64(); in.imm = immZ(in.size); }
            case 0x6a -> { in.op = Op.PUSH_I; in.size = size64(); in.imm = imm(1); }
            case 0x69, 0x6b -> {
                in.size = vsize();
                modrm(in, false, false);
                in.imm = b == 0x69 ? immZ(in.size) : imm(1);
                in.op = Op.IMUL3;
            }
            case 0x6c, 0x6d, 0x6e, 0x6f -> unsupported(in, "ins/outs");
            case 0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f -> {
                in.op = Op.JCC; in.sub = b & 0xf; in.imm = imm(1);
            }
            case 0x80, 0x81, 0x83 -> {
                in.size = b == 0x80 ? 1 : vsize();
                modrm(in, false, b == 0x80);
                in.sub = in.reg & 7;
                in.imm = (b == 0x81 ? immZ(in.size) : imm(1)) & CpuState.mask(in.size);
                in.op = in.mem ? Op.ALU_MI : Op.ALU_RI;
            }
            case 0x84, 0x85 -> {
                in.size = b == 0x84 ? 1 : vsize();
                modrm(in, b == 0x84, b == 0x84);
                in.op = Op.TEST_R;
            }
            case 0x86, 0x87 -> {
                in.size = b == 0x86 ? 1 : vsize();
                modrm(in, b == 0x86, b == 0x86);
                in.op = in.mem ? Op.XCHG : Op.XCHG_RR;
            }
            case 0x88, 0x89 -> {
                in.size = b == 0x88 ? 1 : vsize();
                modrm(in, b == 0x88, b == 0x88);
                in.op = in.mem ? Op.STORE : Op.MOV_RR;
            }
            case 0x8a, 0x8b -> {
                in.size = b == 0x8a ? 1 : vsize();
                modrm(in, b == 0x8a, b == 0x8a);
                if (in.mem) in.op = Op.LOAD;
                else { int t = in.rm; in.rm = in.reg; in.reg = t; in.op = Op.MOV_RR; }
            }
            case 0x8c, 0x8e -> unsupported(in, "mov to/from a segment register");
            case 0x8d -> {
                in.size = vsize();
                modrm(in, false, false);
                if (!in.mem) exception(in, Op.UD);
                else in.op = Op.LEA;
            }
            case 0x8f -> {
                if (peekRegField() != 0) { unsupported(in, "XOP"); return; }
                in.size = size64();
                modrm(in, false, false);
                if (in.mem) in.op = Op.POP_M;
                else { in.op = Op.POP_R; in.reg = in.rm; }
            }
            case 0x90 -> {
                if ((rex & 1) != 0) { in.op = Op.XCHG_RR; in.size = vsize(); in.reg = 8; in.rm = 0; }
                else in.op = Op.NOP;  // nop, and pause with F3
            }
            case 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97 -> {
                in.op = Op.XCHG_RR; in.size = vsize(); in.reg = (b & 7) | ((rex & 1) << 3); in.rm = 0;
            }
            case 0x98 -> { in.op = Op.CONV_A; in.size = vsize(); }
            case 0x99 -> { in.op = Op.CONV_D; in.size = vsize(); }
            case 0x9b -> unsupported(in, "fwait");
            case 0x9c -> { in.op = Op.PUSHF; in.size = size64(); }
            case 0x9d -> { in.op = Op.POPF; in.size = size64(); }
            case 0x9e -> in.op = Op.SAHF;
            case 0x9f -> in.op = Op.LAHF;
            case 0xa0, 0xa1, 0xa2, 0xa3 -> {
                in.size = (b & 1) == 0 ? 1 : vsize();
                in.reg = 0;
                in.mem = true;
                in.addr32 = addr32;
                in.disp = addr32 ? imm(4) & 0xffffffffL : imm(8);
                in.op = b < 0xa2 ? Op.LOAD : Op.STORE;
            }
            case 0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf -> {
                in.op = Op.STRING;
                in.size = (b & 1) == 0 ? 1 : vsize();
                in.addr32 = addr32;
                in.sub = switch (b & 0xfe) {
                    case 0xa4 -> Op.STR_MOVS;
                    case 0xa6 -> Op.STR_CMPS;
                    case 0xaa -> Op.STR_STOS;
                    case 0xac -> Op.STR_LODS;
                    default -> Op.STR_SCAS;
                };
            }
            case 0xa8, 0xa9 -> {
                in.size = b == 0xa8 ? 1 : vsize();
                in.imm = (b == 0xa8 ? imm(1) : immZ(in.size)) & CpuState.mask(in.size);
                in.rm = 0;
                in.op = Op.TEST_I;
            }
            case 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7 -> {
                in.op = Op.MOV_RI; in.size = 1; in.rm = byteReg((b & 7) | ((rex & 1) << 3)); in.imm = imm(1) & 0xff;
            }
            case 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf -> {
                in.op = Op.MOV_RI; in.size = vsize(); in.rm = (b & 7) | ((rex & 1) << 3);
                in.imm = imm(in.size) & CpuState.mask(in.size);
            }
            case 0xc0, 0xc1, 0xd0, 0xd1, 0xd2, 0xd3 -> {
                in.size = (b & 1) == 0 ? 1 : vsize();
                modrm(in, false, (b & 1) == 0);
                in.sub = in.reg & 7;
                if (b <= 0xc1) in.imm = imm(1) & 0xff;
                else if (b <= 0xd1) in.imm = 1;
                else in.size2 = 1;  // count in CL
                in.op = Op.SHIFT;
            }
            case 0xc2 -> { in.op = Op.RET; in.imm = imm(2) & 0xffff; }
            case 0xc3 -> in.op = Op.RET;
            case 0xc4, 0xc5 -> unsupported(in, "VEX-encoded instruction");
            case 0xc6, 0xc7 -> {
                if (peekRegField() != 0) {
                    if (peekRegField() == 7) unsupported(in, "xabort/xbegin");
                    else exception(in, Op.UD);
                    return;
                }
                in.size = b == 0xc6 ? 1 : vsize();
                modrm(in, false, b == 0xc6);
                in.imm = (b == 0xc6 ? imm(1) : immZ(in.size)) & CpuState.mask(in.size);
                in.op = in.mem ? Op.STORE_I : Op.MOV_RI;
            }
            case 0xc8 -> unsupported(in, "enter");
            case 0xc9 -> in.op = Op.LEAVE;
            case 0xca, 0xcb, 0xcf -> unsupported(in, "far return / iret");
            case 0xcc -> exception(in, Op.BP);
            case 0xcd -> { in.imm = imm(1) & 0xff; exception(in, (int) in.imm); }
            case 0xd7 -> unsupported(in, "xlat");
            case 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf -> unsupported(in, "x87");
            case 0xe0, 0xe1, 0xe2, 0xe3 -> { in.op = Op.LOOP; in.sub = b & 3; in.addr32 = addr32; in.imm = imm(1); }
            case 0xe4, 0xe5, 0xe6, 0xe7, 0xec, 0xed, 0xee, 0xef -> {
                in.op = (b & 2) == 0 ? Op.IN : Op.OUT;
                in.size = (b & 1) == 0 ? 1 : opsize16 ? 2 : 4;
                in.imm = b < 0xe8 ? imm(1) & 0xff : -1;
            }
            case 0xe8 -> { in.op = Op.CALL; in.imm = imm(4); }
            case 0xe9 -> { in.op = Op.JMP; in.imm = imm(4); }
            case 0xeb -> { in.op = Op.JMP; in.imm = imm(1); }
            case 0xf1 -> exception(in, Op.DB);
            case 0xf4 -> in.op = Op.HLT;
            case 0xf5 -> { in.op = Op.FLAGOP; in.sub = Op.FL_CMC; }
            case 0xf6, 0xf7 -> {
                in.size = b == 0xf6 ? 1 : vsize();
                modrm(in, false, b == 0xf6);
                switch (in.reg & 7) {
                    case 0, 1 -> { in.imm = (b == 0xf6 ? imm(1) : immZ(in.size)) & CpuState.mask(in.size); in.op = Op.TEST_I; }
                    case 2 -> in.op = Op.NOT;
                    case 3 -> in.op = Op.NEG;
                    case 4 -> in.op = Op.MUL1;
                    case 5 -> { in.op = Op.MUL1; in.sub = 1; }
                    case 6 -> in.op = Op.DIV;
                    default -> { in.op = Op.DIV; in.sub = 1; }
                }
            }
            case 0xf8 -> { in.op = Op.FLAGOP; in.sub = Op.FL_CLC; }
            case 0xf9 -> { in.op = Op.FLAGOP; in.sub = Op.FL_STC; }
            case 0xfa -> { in.op = Op.FLAGOP; in.sub = Op.FL_CLI; }
            case 0xfb -> { in.op = Op.FLAGOP; in.sub = Op.FL_STI; }
            case 0xfc -> { in.op = Op.FLAGOP; in.sub = Op.FL_CLD; }
            case 0xfd -> { in.op = Op.FLAGOP; in.sub = Op.FL_STD; }
            case 0xfe -> {
                int r = peekRegField();
                if (r > 1) { exception(in, Op.UD); return; }
                in.size = 1;
                modrm(in, false, true);
                in.op = Op.INC_DEC; in.sub = r;
            }
            case 0xff -> {
                int r = peekRegField();
                switch (r) {
                    case 0, 1 -> { in.size = vsize(); modrm(in, false, false); in.op = Op.INC_DEC; in.sub = r; }
                    case 2, 4 -> { in.size = 8; modrm(in, false, false); in.op = r == 2 ? Op.CALL_IND : Op.JMP_IND; }
                    case 6 -> {
                        in.size = size64(); modrm(in, false, false);
                        if (in.mem) in.op = Op.PUSH_M;
                        else { in.op = Op.PUSH_R; in.reg = in.rm; }
                    }
                    case 3, 5 -> unsupported(in, "far call/jmp");
                    default -> exception(in, Op.UD);
                }
            }
            default -> unsupported(in, "one-byte opcode 0x" + Integer.toHexString(b));
        }
    }

    private void twoByte(Insn in, int b) {
        switch (b) {
            case 0x01 -> {
                int m = peekModrm();
                if (m == 0xc1 || m == 0xd9) { next(); in.op = Op.VMCALL; return; }   // vmcall, vmmcall
                if ((m >> 6) == 3) { unsupported(in, "0f 01 register form"); return; }
                modrm(in, false, false);
                switch (in.reg & 7) {
                    case 0 -> in.op = Op.SGDT;
                    case 1 -> in.op = Op.SIDT;
                    case 2 -> in.op = Op.LGDT;
                    case 3 -> in.op = Op.LIDT;
                    case 7 -> in.op = Op.INVLPG;
                    default -> unsupported(in, "0f 01 /" + (in.reg & 7));
                }
            }
            case 0x04, 0x0a, 0x0c, 0x0e, 0x0f, 0x24, 0x25, 0x26, 0x27, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x0b,
                 0xff, 0xa6, 0xa7 -> exception(in, Op.UD);
            case 0xb9 -> { modrm(in, false, false); exception(in, Op.UD); }
            case 0x0d, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f -> { modrm(in, false, false); in.op = Op.NOP; }
            case 0x20, 0x22 -> {
                int m = next();
                int cr = ((m >> 3) & 7) | ((rex & 4) << 1);
                in.rm = (m & 7) | ((rex & 1) << 3);
                in.reg = cr;
                in.size = 8;
                if (cr != 0 && cr != 2 && cr != 3 && cr != 4 && cr != 8) exception(in, Op.UD);
                else in.op = b == 0x20 ? Op.MOV_FROM_CR : Op.MOV_TO_CR;
            }
            case 0x30 -> in.op = Op.WRMSR;
            case 0x31 -> in.op = Op.RDTSC;
            case 0x32 -> in.op = Op.RDMSR;
            case 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f -> {
                in.size = vsize(); modrm(in, false, false); in.op = Op.CMOVCC; in.sub = b & 0xf;
            }
            case 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f -> {
                in.op = Op.JCC; in.sub = b & 0xf; in.imm = imm(4);
            }
            case 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f -> {
                in.size = 1; modrm(in, false, true); in.op = Op.SETCC; in.sub = b & 0xf;
            }
            case 0xa2 -> in.op = Op.CPUID;
            case 0xa3, 0xab, 0xb3, 0xbb -> {
                in.size = vsize(); modrm(in, false, false); in.op = Op.BT;
                in.sub = switch (b) { case 0xa3 -> 0; case 0xab -> 1; case 0xb3 -> 2; default -> 3; };
            }
            case 0xba -> {
                int r = peekRegField();
                if (r < 4) { exception(in, Op.UD); return; }
                in.size = vsize(); modrm(in, false, false); in.op = Op.BT; in.sub = r - 4; in.size2 = 1;
                in.imm = imm(1) & 0xff;
            }
            case 0xa4, 0xa5, 0xac, 0xad -> {
                in.size = vsize(); modrm(in, false, false);
                in.op = b < 0xa8 ? Op.SHLD : Op.SHRD;
                if ((b & 1) == 0) in.imm = imm(1) & 0xff;
                else in.size2 = 1;
            }
            case 0xae -> {
                int m = peekModrm();
                int r = (m >> 3) & 7;
                if ((m >> 6) == 3 && r >= 5) { next(); in.op = Op.NOP; }       // lfence, mfence, sfence
                else if ((m >> 6) != 3 && r == 7 && !opsize16) { modrm(in, false, false); in.op = Op.NOP; } // clflush
                else unsupported(in, "0f ae /" + r);
            }
            case 0xaf -> { in.size = vsize(); modrm(in, false, false); in.op = Op.IMUL2; }
            case 0xb0, 0xb1 -> {
                in.size = b == 0xb0 ? 1 : vsize(); modrm(in, b == 0xb0, b == 0xb0); in.op = Op.CMPXCHG;
            }
            case 0xc0, 0xc1 -> {
                in.size = b == 0xc0 ? 1 : vsize(); modrm(in, b == 0xc0, b == 0xc0); in.op = Op.XADD;
            }
            case 0xb6, 0xb7, 0xbe, 0xbf -> {
                in.size = vsize(); in.size2 = (b & 1) == 0 ? 1 : 2;
                modrm(in, false, in.size2 == 1);
                in.op = b < 0xb8 ? Op.MOVZX : Op.MOVSX;
            }
            case 0xb8 -> {
                if (lastRep != 0xf3) { unsupported(in, "jmpe"); return; }
                in.size = vsize(); modrm(in, false, false); in.op = Op.POPCNT;
            }
            case 0xbc, 0xbd -> {
                in.size = vsize(); modrm(in, false, false);
                boolean f3 = lastRep == 0xf3;
                in.op = b == 0xbc ? (f3 ? Op.TZCNT : Op.BSF) : (f3 ? Op.LZCNT : Op.BSR);
            }
            case 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf -> {
                in.op = Op.BSWAP; in.size = (rex & 8) != 0 ? 8 : 4; in.reg = (b & 7) | ((rex & 1) << 3);
            }
            default -> unsupported(in, "two-byte opcode 0f " + Integer.toHexString(b));
        }
        if (in.op != Op.UNSUPPORTED && in.op != Op.EXCEPTION && (in.rep || in.repne)
                && b != 0xb8 && b != 0xbc && b != 0xbd && b != 0x1e && b != 0x1f && b != 0xae) {
            // F2/F3 select SSE forms for most of the 0f map; we support none of them.
            unsupported(in, "f2/f3 form of 0f " + Integer.toHexString(b));
        }
    }

    private int peekModrm() {
        if (pos >= avail) throw OUT_OF_BYTES;
        return buf[pos] & 0xff;
    }
}
