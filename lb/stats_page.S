/*
 * stats_page.S - lb/stats_page.html, embedded as it is into the binary
 * (.incbin), so the page stays a readable file of its own and needs no
 * generator at build time. The path is relative to the top of the tree,
 * where make runs the assembler; the Makefile names the page as a
 * prerequisite of this object.
 *
 *   stats_page      the bytes of the page, then a NUL
 *   stats_page_len  their count (without the NUL), a uint64_t
 */
    .section .rodata
    .balign 16
    .globl stats_page
    .hidden stats_page
    .type stats_page, @object
stats_page:
    .incbin "lb/stats_page.html"
stats_page_end:
    .byte 0
    .size stats_page, . - stats_page

    .balign 8
    .globl stats_page_len
    .hidden stats_page_len
    .type stats_page_len, @object
stats_page_len:
    .quad stats_page_end - stats_page
    .size stats_page_len, 8

/* no executable stack for the program because of this file */
    .section .note.GNU-stack, "", @progbits
