# The Seurat workflow of mmaavi end to end on the bundled BMMC mosaic (what `make demo` runs).
#
#   Rscript inst/scripts/demo.R [OUT_DIR]      (default: mmaavi_demo/R)
#
# Builds a mosaic Seurat object (CITE-seq cells: RNA + ADT; Multiome cells: RNA + ATAC), trains
# mmaavi with the CITE-seq cell types as the only labels (default training: up to 300 epochs
# with early stopping; MMAAVI_DEMO_EPOCHS overrides), and writes to OUT_DIR:
#   umap.png                 UMAP of the embedding by batch, cell type and predicted label
#   imputed_CD19.png         imputed CD19 protein, CITE-seq vs Multiome cells (never measured)
#   embedding.csv            the embedding (cells x 30)
#   cells.csv                per cell: batch, cell type, attention weights, predicted label
#   label_transfer.csv       Multiome cells: true vs predicted cell type (counts)
#   bayes_factors_B.csv      B cells vs the rest, every modality
#   summary.txt              accuracy, training epochs, time, versions
#   model/                   the saved model (LoadMMAAVI("OUT_DIR/model"))

suppressPackageStartupMessages({
  library(mmaavi)
  library(Seurat)
  library(ggplot2)
})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else file.path("mmaavi_demo", "R")
epochs <- as.integer(Sys.getenv("MMAAVI_DEMO_EPOCHS", "300"))
dir.create(out, recursive = TRUE, showWarnings = FALSE)
unlink(file.path(out, "model"), recursive = TRUE)
print(mmaavi_python_info())

pad <- function(x, features, cells) {
  t <- Matrix::summary(x)
  Matrix::sparseMatrix(
    i = match(rownames(x), features)[t$i], j = match(colnames(x), cells)[t$j], x = t$x,
    dims = c(length(features), length(cells)), dimnames = list(features, cells)
  )
}
bmmc <- ReadBMMCMosaic()
cells <- rownames(bmmc$cells)
genes <- union(rownames(bmmc$counts$cite_rna), rownames(bmmc$counts$multiome_rna))
rna <- pad(bmmc$counts$cite_rna, genes, cells) + pad(bmmc$counts$multiome_rna, genes, cells)
seu <- CreateSeuratObject(counts = rna, meta.data = bmmc$cells)
seu[["ADT"]] <- CreateAssayObject(counts = pad(bmmc$counts$cite_adt, rownames(bmmc$counts$cite_adt), cells))
seu[["ATAC"]] <- CreateAssayObject(counts = pad(bmmc$counts$multiome_atac, rownames(bmmc$counts$multiome_atac), cells))
seu$cite_label <- ifelse(seu$assay == "cite", seu$cell_type_l1, NA)

started <- Sys.time()
seu <- RunMMAAVI(seu,
  assays = c(rna = "RNA", adt = "ADT", atac = "ATAC"), batch = "batch",
  labels = "cite_label", seed = 0, max_epochs = epochs,
  model.dir = file.path(out, "model")
)
seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))

seu <- suppressWarnings(RunUMAP(seu, reduction = "mmaavi", dims = 1:30, seed.use = 0, verbose = FALSE))
png(file.path(out, "umap.png"), width = 1800, height = 550, res = 110)
print(DimPlot(seu, group.by = "batch") + DimPlot(seu, group.by = "cell_type_l1") +
  DimPlot(seu, group.by = "mmaavi_label"))
invisible(dev.off())

seu <- MMAAVIImpute(seu, "adt", new.assay = "ADTimputed")
DefaultAssay(seu) <- "ADTimputed"
png(file.path(out, "imputed_CD19.png"), width = 1400, height = 600, res = 110)
print(FeaturePlot(seu, features = "CD19", split.by = "assay"))
invisible(dev.off())

utils::write.csv(Embeddings(seu, "mmaavi"), file.path(out, "embedding.csv"))
columns <- c("batch", "assay", "cell_type_l1", grep("^mmaavi_", colnames(seu[[]]), value = TRUE))
utils::write.csv(seu[[]][, columns], file.path(out, "cells.csv"))
multiome <- seu$assay == "multiome"
transfer <- as.data.frame(table(truth = seu$cell_type_l1[multiome], predicted = seu$mmaavi_label[multiome]))
utils::write.csv(transfer[transfer$Freq > 0, ], file.path(out, "label_transfer.csv"), row.names = FALSE)
bf <- MMAAVIBayesFactors(seu, group.by = "cell_type_l1", ident.1 = "B")
utils::write.csv(bf, file.path(out, "bayes_factors_B.csv"), row.names = FALSE)

accuracy <- mean(as.character(seu$mmaavi_label[multiome]) == seu$cell_type_l1[multiome])
misc <- Misc(seu[["mmaavi"]])
top <- function(mod) paste(head(bf$feature[bf$modality == mod & bf$lfc_mean > 0], 10), collapse = ", ")
summary_lines <- c(
  sprintf("cells: %d (%s)", ncol(seu), paste(names(table(seu$batch)), table(seu$batch), collapse = ", ")),
  sprintf("training: %d epochs (best %d, %s), %.0f s", misc$train$n_epochs, misc$train$best_epoch, misc$train$stop_reason, seconds),
  sprintf("label transfer to Multiome cells (labels from CITE-seq only): accuracy %.3f", accuracy),
  sprintf("B vs rest, top RNA: %s", top("rna")),
  sprintf("B vs rest, top ADT: %s", top("adt")),
  sprintf("versions: mmaavi R %s / Python %s, torch %s", misc$versions$mmaavi.r, misc$versions$mmaavi.python, misc$versions$torch)
)
writeLines(summary_lines, file.path(out, "summary.txt"))
writeLines(summary_lines)
message("mmaavi R demo: results written to ", out)
