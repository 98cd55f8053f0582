# Argument checks: none of these needs Python (each fails before Python is started).

test_that("RunMMAAVI refuses unknown assays, listing the object's assays", {
  expect_error(
    RunMMAAVI(bmmc_seurat(), assays = c(rna = "RNA", adt = "PROTEIN"), batch = "batch", n.components = 5),
    "assays: unknown assay 'PROTEIN'; the object has 'RNA', 'ADT', 'ATAC'"
  )
  expect_error(
    RunMMAAVI(bmmc_seurat(), assays = c("RNA", "ADT"), n.components = 5),
    "assays must be a named character vector.*without names"
  )
  expect_error(
    RunMMAAVI(bmmc_seurat(), assays = c(rna = "RNA", rna = "ADT"), n.components = 5),
    "modality names must be unique"
  )
})

test_that("RunMMAAVI refuses a missing batch or labels column and NA batches", {
  seu <- bmmc_seurat()
  expect_error(
    RunMMAAVI(seu, batch = "donor", n.components = 5),
    "batch = 'donor' is not a column of meta.data; its columns are 'orig.ident'"
  )
  expect_error(RunMMAAVI(seu, batch = "batch", labels = "celltype"), "labels = 'celltype' is not a column")
  seu$batch[3] <- NA
  expect_error(RunMMAAVI(seu, batch = "batch", n.components = 5), "has 1 missing values")
  seu$nolabel <- NA
  expect_error(RunMMAAVI(seu, labels = "nolabel"), "has no labelled cell")
})

test_that("RunMMAAVI refuses wrong types with what it expected and found", {
  seu <- bmmc_seurat()
  expect_error(RunMMAAVI(seu, batch = "batch"), "n.components \\(required without labels\\) must be a single whole number")
  expect_error(RunMMAAVI(seu, n.components = "ten"), "n.components .*found a character of length 1")
  expect_error(RunMMAAVI(seu, n.components = 2.5), "whole number >= 1.*\\(2.5\\)")
  expect_error(RunMMAAVI(seu, n.components = 5, seed = -1), "seed must be a single whole number >= 0")
  expect_error(RunMMAAVI(seu, n.components = 5, batch = 3), "batch must be a single non-empty character string")
  expect_error(RunMMAAVI(seu, n.components = 5, verbose = "yes"), "verbose must be TRUE or FALSE")
  expect_error(RunMMAAVI(seu, n.components = 5, reduction.key = "mm-"), "reduction.key must be letters and digits ending in '_'")
  expect_error(RunMMAAVI(seu, n.components = 5, batch.features = "some"), "batch.features must be one of 'nonzero', 'all'; found 'some'")
  expect_error(RunMMAAVI(matrix(1, 2, 2)), "takes a Seurat or SingleCellExperiment object; found a matrix")
})

test_that("RunMMAAVI refuses bad observed specifications and a non-empty model.dir", {
  seu <- bmmc_seurat()
  expect_error(RunMMAAVI(seu, n.components = 5, observed = "x"), "observed must be a named list")
  expect_error(RunMMAAVI(seu, n.components = 5, observed = list(protein = "x")), "observed names modalities 'protein' that are not being used")
  expect_error(RunMMAAVI(seu, n.components = 5, verbose = FALSE, observed = list(adt = "batch")), "names a meta.data column that is not logical")
  expect_error(RunMMAAVI(seu, n.components = 5, verbose = FALSE, observed = list(adt = c("no-such-cell", colnames(seu)[1]))), "1 values are neither a logical meta.data column nor cell names")
  dir <- tempfile()
  dir.create(dir)
  writeLines("x", file.path(dir, "f"))
  expect_error(RunMMAAVI(seu, n.components = 5, model.dir = dir), "exists and is not empty")
})

test_that("RunMMAAVI refuses cells that measured nothing", {
  m <- bmmc_matrices()
  m$rna[, 1:2] <- 0
  m$adt[, 1:2] <- 0
  seu <- suppressWarnings(SeuratObject::CreateSeuratObject(counts = m$rna, meta.data = m$cells))
  seu[["ADT"]] <- SeuratObject::CreateAssayObject(counts = m$adt)
  expect_error(
    RunMMAAVI(seu, batch = "batch", n.components = 5, verbose = FALSE),
    "2 cells measured no modality .* Remove them first"
  )
})

test_that("the SCE method refuses unknown altExps, assay types and missing cell names", {
  sce <- bmmc_sce()
  expect_error(RunMMAAVI(sce, altexps = c(adt = "CITE"), n.components = 5), "altexps: unknown altExp 'CITE'; the object has 'ADT', 'ATAC'")
  expect_error(RunMMAAVI(sce, assay.type = "logcounts", n.components = 5), "modality 'rna': no assay 'logcounts'; its assays are 'counts'")
  expect_error(RunMMAAVI(sce, altexps = c(rna = "ADT"), n.components = 5), "main.modality 'rna' is also a name in altexps")
  expect_error(RunMMAAVI(sce, batch = "nope", n.components = 5), "batch = 'nope' is not a column of colData")
  colnames(sce) <- NULL
  expect_error(RunMMAAVI(sce, n.components = 5), "needs unique column \\(cell\\) names")
})

test_that("result functions say what is missing before asking Python", {
  seu <- bmmc_seurat()
  expect_error(MMAAVIBayesFactors(seu, "cell_type_l1", "B"), "no reduction 'mmaavi'.*run RunMMAAVI\\(\\) first")
  expect_error(MMAAVIImpute(seu, "adt"), "no reduction 'mmaavi'")
  expect_error(MMAAVIBayesFactors(list(), "x", "B"), "expected a Seurat or SingleCellExperiment object")
  fake <- structure(list(path = tempfile(), cells = colnames(seu), obs = seu[[]]), class = "MMAAVIModel")
  expect_error(MMAAVIBayesFactors(fake, "cell_type_l1", "Bcell"), "ident.1 must be one group of group.by; found 'Bcell'. The groups are 'B', 'CD4\\+ T'")
  expect_error(MMAAVIBayesFactors(fake, "cell_type_l1", "B", ident.2 = c("NK", "DC")), "ident.2 must be one group")
  expect_error(MMAAVIBayesFactors(fake, "cell_type_l1", "B"), "no longer exists")
  expect_error(MMAAVIBayesFactors(fake, 1:3, "B"), "group.by must be a column name of the cell table or a vector with one group per cell \\(1100\\)")
  expect_error(MMAAVIImpute(fake, "adt", library.size = -1), "library.size must be a single positive number")
  expect_error(MMAAVIImpute(fake, "adt", new.assay = "X"), "new.assay is for Seurat objects")
  expect_error(LoadMMAAVI(c("a", "b")), "path must be a single non-empty character string")
})

test_that("ReadBMMCMosaic reads the bundled mosaic without Python", {
  bmmc <- ReadBMMCMosaic()
  dims <- vapply(bmmc$counts, dim, integer(2))
  expect_identical(unname(dims[1, ]), c(1000L, 134L, 1134L, 600L))
  expect_identical(unname(dims[2, ]), c(600L, 600L, 500L, 500L))
  expect_true(all(vapply(bmmc$counts, inherits, logical(1), "dgCMatrix")))
  expect_identical(colnames(bmmc$counts$cite_rna), colnames(bmmc$counts$cite_adt))
  expect_identical(sort(rownames(bmmc$cells)), sort(c(colnames(bmmc$counts$cite_rna), colnames(bmmc$counts$multiome_rna))))
  expect_identical(as.vector(table(bmmc$cells$batch)), c(311L, 289L, 221L, 279L))
  expect_true(all(bmmc$counts$cite_adt@x == round(bmmc$counts$cite_adt@x)))
})

test_that("label classes keep a factor's own level order, else factor()'s order (as read_rds)", {
  table <- data.frame(
    fac = factor(c("T", NA, "B", "T", "NK"), levels = c("T", "Mono", "NK", "B")),
    chr = c("T", NA, "B", "T", "NK"),
    int = c(10L, 2L, NA, 2L, 1L),
    stringsAsFactors = FALSE
  )
  # unsorted levels kept, the unused one (Mono) dropped, NA stays unlabelled
  fac <- .check_labels(table, "fac", "meta.data")
  expect_identical(levels(fac), c("T", "NK", "B"))
  expect_identical(as.character(fac), c("T", NA, "B", "T", "NK"))
  expect_identical(levels(.check_labels(table, "chr", "meta.data")), sort(c("T", "B", "NK")))
  # numbers in numeric order (not "1" "10" "2")
  expect_identical(levels(.check_labels(table, "int", "meta.data")), c("1", "2", "10"))
  ordered <- table
  ordered$fac <- factor(ordered$fac, levels = c("NK", "T", "B"), ordered = TRUE)
  expect_identical(levels(.check_labels(ordered, "fac", "meta.data")), c("NK", "T", "B"))
})
