# Board targets, included by the Makefile (`include boards/boards.mk`).
#   make bitstream BOARD=ultra96 [CLOCK=187.5] [VIVADO=/opt/Xilinx/Vivado/2022.1/bin/vivado]
#   make resources BOARD=ultra96 [RECORD=1]   (RECORD=1 updates boards/estimates/$(BOARD).json)
# Without Vivado, `bitstream` generates and checks build/$(BOARD)/ and exits 2 saying
# what to run where Vivado is installed. Boards: ultra96 (V2), ultra96v1, zcu104, kv260, pynqz2.
BOARD ?= ultra96

.PHONY: bitstream resources

bitstream: $(STAMP)
	$(if $(VIVADO),VIVADO="$(VIVADO)") $(BIN)/python -m bamboo.boards.vivado $(BOARD) $(if $(CLOCK),--clock $(CLOCK))

resources: $(STAMP)
	$(BIN)/python -m bamboo.boards.resources $(BOARD) $(if $(RECORD),--record)
