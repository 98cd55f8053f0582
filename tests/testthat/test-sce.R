test_that("RunMMAAVI on a SingleCellExperiment fills reducedDim, colData and metadata", {
  skip_without_python()
  sce <- bmmc_fit("sce")
  z <- SingleCellExperiment::reducedDim(sce, "MMAAVI")
  expect_identical(rownames(z), colnames(sce))
  expect_identical(dim(z), c(1100L, 30L))
  cd <- SummarizedExperiment::colData(sce)
  expect_true(all(cd$MMAAVI_attention_adt[cd$assay == "multiome"] == 0))
  expect_true(all(cd$MMAAVI_attention_atac[cd$assay == "cite"] == 0))
  meta <- S4Vectors::metadata(sce)$mmaavi$MMAAVI
  expect_true(dir.exists(meta$model.dir))
  expect_identical(meta$modalities, c(rna = "counts", adt = "ADT", atac = "ATAC"))
})

test_that("the SCE and Seurat routes give the same embedding for the same data and seed", {
  skip_without_python()
  z_sce <- SingleCellExperiment::reducedDim(bmmc_fit("sce"), "MMAAVI")
  z_seu <- SeuratObject::Embeddings(bmmc_fit("seurat"), "mmaavi")
  expect_identical(unname(z_sce), unname(z_seu))
})

test_that("reducedDim rows follow the cells of a shuffled SCE", {
  skip_without_python()
  shuffled <- RunMMAAVI(bmmc_sce(shuffle_seed = 2),
    batch = "batch", n.components = 10, max_epochs = 2, verbose = FALSE
  )
  z <- SingleCellExperiment::reducedDim(shuffled, "MMAAVI")
  reference <- SingleCellExperiment::reducedDim(bmmc_fit("sce"), "MMAAVI")
  expect_identical(rownames(z), colnames(shuffled))
  expect_false(identical(colnames(shuffled), rownames(reference)))
  expect_identical(z[rownames(reference), ], reference)
})

test_that("Bayes factors and imputation read the SCE's model", {
  skip_without_python()
  sce <- bmmc_fit("sce")
  bf <- MMAAVIBayesFactors(sce, "cell_type_l1", "B", ident.2 = "Mono", modality = "adt", n_samples = 200)
  expect_identical(nrow(bf), 134L)
  expect_identical(unique(bf$comparison), "B vs Mono")
  imputed <- MMAAVIImpute(sce, "atac")
  # the 5 peaks without a count in either Multiome batch are not part of the model
  counted <- Matrix::rowSums(SummarizedExperiment::assay(SingleCellExperiment::altExp(sce, "ATAC"))) > 0
  expect_identical(dim(imputed), c(sum(counted), 1100L))
  expect_setequal(rownames(imputed), names(which(counted)))
  expect_identical(colnames(imputed), colnames(sce))
  expect_error(MMAAVIBayesFactors(sce, "cell_type_l1", "B", reduction = "other"), "no mmaavi model 'other'")
})
