/* CRC-32 (IEEE, bitwise) and 32-bit FNV-1a over 64 KiB of xorshift bytes;
 * returns (crc << 32) | fnv. */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define SIZE 65536
static u8 data[SIZE];

long main(long index, long count) {
    u64 s = 0x9e3779b97f4a7c15UL;
    for (u32 i = 0; i < SIZE; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        data[i] = (u8)(s >> 24);
    }
    u32 crc = 0xffffffffu, fnv = 0x811c9dc5u;
    for (u32 i = 0; i < SIZE; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
        fnv = (fnv ^ data[i]) * 16777619u;
    }
    return (long)((u64)(crc ^ 0xffffffffu) << 32 | fnv);
}
